"""The runtimes a parity run drives: ``edge.parity_worker`` subprocesses for TFLite, one headless Chromium for TFJS.

TFLite artifacts run in ``litert`` and ``tflite-runtime`` subprocesses inside environments without TensorFlow
(``convert.parity.envs``); TFJS artifacts run in headless Chromium (``convert.parity.browser``). Each is started
on first use and reused by every artifact (and, when one ``Runners`` is passed around, by every bundle).
"""

from __future__ import annotations

import json
import subprocess
from typing import Any, Callable, Iterable, Mapping

from convert.errors import DeployKitError
from edge.interpreter import LIGHT_RUNTIMES

TFLITE_RUNTIMES = set(LIGHT_RUNTIMES)  # "litert", "tflite-runtime"
RUNTIMES = (*LIGHT_RUNTIMES, "chromium-cpu", "chromium-wasm", "chromium-webgl")

Progress = Callable[[str], None]


def parse_runtimes(value: str | Iterable[str] | None) -> list[str]:
    """``"litert,chromium-cpu"`` -> a checked list (default: all runtimes).

    Raises:
        DeployKitError: an unknown runtime name, or an empty list.
    """
    if value is None:
        return list(RUNTIMES)
    names = [n.strip() for n in (value.split(",") if isinstance(value, str) else value) if n.strip()]
    unknown = [n for n in names if n not in RUNTIMES]
    if unknown:
        raise DeployKitError(f"unknown runtime {unknown[0]!r} in --runtimes; choose from {', '.join(RUNTIMES)}")
    if not names:
        raise DeployKitError(f"--runtimes is empty; choose from {', '.join(RUNTIMES)}")
    return [n for n in RUNTIMES if n in names]


class _Worker:
    """One ``edge.parity_worker`` subprocess in a runtime environment."""

    def __init__(self, name: str, progress: Progress | None = None) -> None:
        from convert.parity import envs

        self.env = envs.ensure(name, progress)
        self.name = name
        self.proc = subprocess.Popen(
            [str(self.env.python), "-m", "edge.parity_worker", "--runtime", self.env.module],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd="/",
            env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin"})
        hello = self._read()
        if "error" in hello:
            self.close()
            raise DeployKitError(f"runtime {name} cannot start: {hello['error']}")
        self.version = str(hello.get("version", ""))
        self.interpreter = str(hello.get("runtime", ""))

    def _read(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise DeployKitError(f"the {self.name} worker exited (status {self.proc.poll()}); rerun, or delete "
                                 f"{self.env.python.parents[1]} to re-create the environment")
        return json.loads(line)

    def request(self, message: Mapping[str, Any]) -> dict[str, Any]:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(message) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.close()  # type: ignore[union-attr]
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001
                self.proc.kill()


class Runners:
    """The runtimes of a parity run, started lazily and reused: one worker per TFLite runtime, one browser.

    Use as a context manager (or call ``close``). Pass one ``Runners`` to many ``verify_bundle`` calls
    to reuse the subprocesses and the browser.
    """

    def __init__(self) -> None:
        self.workers: dict[str, _Worker] = {}
        self.browser: Any = None

    def __enter__(self) -> "Runners":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def worker(self, name: str, progress: Progress | None = None) -> _Worker:
        if name not in self.workers:
            self.workers[name] = _Worker(name, progress)
        return self.workers[name]

    def chromium(self) -> Any:
        if self.browser is None:
            from convert.parity.browser import Browser

            browser = Browser()
            browser.start()
            self.browser = browser
        return self.browser

    def close(self) -> None:
        for worker in self.workers.values():
            worker.close()
        self.workers.clear()
        if self.browser is not None:
            self.browser.close()
            self.browser = None

