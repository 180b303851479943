"""Headless ImageJ macros through oggmhub.session.fiji, with a real ImageJ.

Debian's ImageJ 1.53 (``apt-get install imagej xvfb xauth``) stands in for Fiji here, as
TESTING.md says; the Fiji path is exercised with a FIJI_HOME whose launcher hands the
Fiji command line to that same ImageJ.
"""

import random
import stat
import subprocess
import sys

import pytest

from oggmhub.session import fiji

SIZE, SQUARE = 96, (30, 70)  # a bright 40x40 square on a dark, noisy 96x96 background


def write_pgm(path):
    rng = random.Random(4)
    pixels = bytearray()
    for y in range(SIZE):
        for x in range(SIZE):
            inside = SQUARE[0] <= x < SQUARE[1] and SQUARE[0] <= y < SQUARE[1]
            pixels.append(max(0, min(255, (200 if inside else 40) + rng.randint(-30, 30))))
    path.write_bytes(b"P5\n%d %d\n255\n" % (SIZE, SIZE) + bytes(pixels))
    return path


def read_pgm(path):
    data = path.read_bytes()
    header = [w for line in data.splitlines()[:4] if not line.startswith(b"#") for w in line.split()]
    assert header[0] == b"P5", f"{path} is not a binary PGM"
    width, height = int(header[1]), int(header[2])
    return width, height, data[-width * height:]


@pytest.fixture
def image(tmp_path):
    return write_pgm(tmp_path / "cells.pgm")


def test_blur_and_threshold_a_generated_image(image, tmp_path):
    """A blur and a threshold leave the square, and only the square, in the mask."""
    out = fiji.process_image(
        image,
        'run("Gaussian Blur...", "sigma=2");\n'
        'setThreshold(120, 255);\n'
        'setOption("BlackBackground", true);\n'
        'run("Convert to Mask");',
        output=tmp_path / "mask.pgm",
        fmt="PGM",
    )
    assert out == tmp_path / "mask.pgm"
    width, height, pixels = read_pgm(out)
    assert (width, height) == (SIZE, SIZE)
    foreground = [i for i, v in enumerate(pixels) if v == 255]
    side = SQUARE[1] - SQUARE[0]
    assert abs(len(foreground) - side * side) < 0.05 * side * side, len(foreground)
    assert set(pixels) <= {0, 255}, "a mask has two values"
    xs, ys = {i % width for i in foreground}, {i // width for i in foreground}
    assert min(xs) >= SQUARE[0] - 2 and max(xs) <= SQUARE[1] + 1
    assert min(ys) >= SQUARE[0] - 2 and max(ys) <= SQUARE[1] + 1


def test_macro_output_argument_and_files(image):
    result = fiji.run_macro(
        'open(getArgument());\n'
        'getStatistics(area, mean, min, max);\n'
        'print("area=" + area + " mean=" + d2s(mean, 1));\n'
        'run("Gaussian Blur...", "sigma=4");\n'
        'getStatistics(area, mean, min2, max2);\n'
        'print("range " + (max - min) + " -> " + (max2 - min2));\n'
        'saveAs("Tiff", "OUTDIR" + "blurred.tif");',
        argument=str(image),
    )
    lines = dict(line.split(" ", 1) for line in result.output.splitlines())
    assert lines["area=9216"].startswith("mean=")
    mean = float(lines["area=9216"].split("=")[1])
    expected = (40 * (SIZE * SIZE - 1600) + 200 * 1600) / (SIZE * SIZE)
    assert abs(mean - expected) < 3, mean
    before, after = (int(v) for v in lines["range"].split(" -> "))
    assert after < before, "a blur narrows the range of values"
    assert [p.name for p in result.files] == ["blurred.tif"]
    assert result.files[0].stat().st_size > SIZE * SIZE


def test_terminal_command(image, tmp_path):
    macro = tmp_path / "count.ijm"
    macro.write_text('open(getArgument());\nprint("width=" + getWidth());\n')
    proc = subprocess.run([sys.executable, "-m", "oggmhub.session.fiji", str(macro), str(image)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"width={SIZE}"


def test_failing_macro_is_reported():
    with pytest.raises(fiji.FijiError, match="did not finish|failed") as e:
        fiji.run_macro('print("before");\nrun("No Such Command");', timeout=8)
    assert "before" in str(e.value)


def test_fiji_home_is_used_first(image, tmp_path, monkeypatch):
    """FIJI_HOME wins over Debian's ImageJ; its launcher gets Fiji's headless arguments.

    The launcher here is a stand-in (no Fiji on this machine): it checks it got
    ``--headless --console -batch MACRO ARG`` and runs that macro with Debian's ImageJ.
    """
    home = tmp_path / "Fiji"
    home.mkdir()
    launcher = home / "fiji-linux-x64"
    launcher.write_text(
        "#!/bin/bash\n"
        '[ "$1 $2 $3" = "--headless --console -batch" ] || { echo "bad arguments: $*" >&2; exit 2; }\n'
        f'exec xvfb-run --auto-servernum java -jar {fiji.DEBIAN_IJ_JAR} -batch "$4" "$5"\n'
    )
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FIJI_HOME", str(home))
    found = fiji.find_imagej()
    assert (found.kind, found.where) == ("fiji", str(home))
    result = fiji.run_macro('open(getArgument());\nprint("height=" + getHeight());', argument=str(image))
    assert result.output == f"height={SIZE}"


def test_nothing_found_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("FIJI_HOME", str(tmp_path / "no-fiji"))
    monkeypatch.setenv("IJ_JAR", str(tmp_path / "no-ij.jar"))
    with pytest.raises(fiji.FijiError, match="no ImageJ found.*FIJI_HOME.*apt-get install -y imagej"):
        fiji.find_imagej()
