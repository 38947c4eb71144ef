"""The stages of ``deploykit convert``, in the order ``convert.pipeline`` runs them.

Each stage is a function that takes the results of the stages before it and returns a small result
object; none writes outside the staging and work folders it is given.

1. load the reference: ``convert.reference.load``
2. read the data: :mod:`convert.stages.sources` (DATA aligned to the inputs, feature statistics)
3. run the reference: :mod:`convert.stages.reference_run` (outputs on DATA and on the golden inputs,
   the task, the calibration / held-out split)
4. export the SavedModel: :mod:`convert.stages.export` (recurrent layers unrolled)
5. fold the input scaling: ``convert.fold``; 6. GPTQ-round the int8 kernels: ``convert.rounding``;
   their SavedModels: :mod:`convert.stages.quantized`
7. write each TFLite variant: :mod:`convert.stages.tflite_variants`
8. write the golden file (with the float16 precision twin): :mod:`convert.stages.golden_file`
9. write each TFJS format and copy the page: :mod:`convert.stages.tfjs`
10. write the manifest, once: :mod:`convert.stages.manifest_file`

Artifact stages degrade per artifact: a variant or format that fails is recorded in
:class:`convert.stages.written.Written` as skipped, with its reason, and the others are still written.
"""
