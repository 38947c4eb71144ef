"""The parity engine behind `deploykit verify`: every artifact, in its real runtime, against Keras."""
