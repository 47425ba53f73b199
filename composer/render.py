"""MIDI -> WAV through a software synthesizer that is already installed: FluidSynth or TiMidity++.

FluidSynth needs a General MIDI soundfont: ``--soundfont PATH``, ``$COMPOSER_SOUNDFONT``, or one found in
the usual places (Debian/Ubuntu's ``fluid-soundfont-gm`` installs ``/usr/share/sounds/sf2/FluidR3_GM.sf2``).
TiMidity brings its own instrument set (or uses the soundfont given). Nothing is downloaded; when neither
is there, the error says what to install.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from composer.errors import ComposerError

SOUNDFONT_ENV = "COMPOSER_SOUNDFONT"
#: Where Linux distributions and Homebrew put General MIDI soundfonts, best first.
SOUNDFONT_PATHS = (
    "/usr/share/sounds/sf2/FluidR3_GM.sf2",
    "/usr/share/soundfonts/FluidR3_GM.sf2",
    "/usr/share/soundfonts/default.sf2",
    "/usr/share/sounds/sf2/default-GM.sf2",
    "/usr/share/soundfonts/default-GM.sf2",
    "/usr/share/sounds/sf3/default-GM.sf3",
    "/usr/share/sounds/sf2/TimGM6mb.sf2",
    "/usr/share/sounds/sf2/FluidR3_GS.sf2",
    "/usr/share/soundfonts/FluidR3_GM2-2.sf2",
    "/usr/local/share/soundfonts/default.sf2",
    "/opt/homebrew/share/soundfonts/default.sf2",
    "/usr/local/share/fluidsynth/default.sf2",
)
INSTALL_HINT = (
    "install FluidSynth with a General MIDI soundfont (apt-get install fluidsynth fluid-soundfont-gm) "
    "or TiMidity++ (apt-get install timidity)"
)
#: A render taking longer than this (seconds) is stopped as hung.
TIMEOUT_S = 1800


@dataclass
class RenderResult:
    path: Path
    tool: str  # "fluidsynth" or "timidity"
    soundfont: Path | None
    bytes: int


def find_soundfont() -> Path | None:
    """The first General MIDI soundfont found ($COMPOSER_SOUNDFONT first), or None."""
    env = os.environ.get(SOUNDFONT_ENV)
    candidates = ([env] if env else []) + list(SOUNDFONT_PATHS)
    for c in candidates:
        p = Path(c)
        if p.is_file():
            return p
    return None


def choose_synth(soundfont: Path | None = None) -> tuple[str, str, Path | None]:
    """(tool, executable, soundfont) of the synthesizer to use; a ComposerError says what is missing."""
    fluid = shutil.which("fluidsynth")
    timidity = shutil.which("timidity")
    if soundfont is not None and not Path(soundfont).is_file():
        raise ComposerError(f"soundfont {soundfont}: no such file")
    sf = Path(soundfont) if soundfont is not None else find_soundfont()
    if fluid and sf is not None:
        return "fluidsynth", fluid, sf
    if timidity:
        return "timidity", timidity, sf
    if fluid:
        raise ComposerError(
            "FluidSynth is installed but no General MIDI soundfont was found: "
            "apt-get install fluid-soundfont-gm, or pass --soundfont PATH"
        )
    raise ComposerError(f"no MIDI synthesizer found: {INSTALL_HINT}")


def render(
    midi: str | os.PathLike[str],
    out: str | os.PathLike[str] | None = None,
    soundfont: str | os.PathLike[str] | None = None,
    sample_rate: int = 44100,
    force: bool = False,
) -> RenderResult:
    """Render ``midi`` to a WAV file (default: next to it, ``.wav``) and return what was written."""
    from composer.errors import MidiReadError
    from composer.midi import read_midi

    src = Path(midi)
    dst = Path(out) if out is not None else src.with_suffix(".wav")
    try:
        read_midi(src)
    except MidiReadError as e:
        raise MidiReadError(f"{src}: {e}") from None
    if dst.exists() and not force:
        raise ComposerError(f"{dst} exists (use --force to overwrite)")
    if not dst.parent.is_dir():
        raise ComposerError(f"{dst.parent}: no such folder")
    tool, exe, sf = choose_synth(Path(soundfont) if soundfont is not None else None)
    tmp = dst.with_name(f".{dst.stem}.tmp{os.getpid()}.wav")
    if tool == "fluidsynth":
        assert sf is not None
        cmd = [exe, "-ni", "-F", str(tmp), "-r", str(sample_rate), str(sf), str(src)]
    else:
        cmd = [exe, "-Ow", "-s", str(sample_rate), "-o", str(tmp)]
        if sf is not None:
            cmd += ["-x", f"soundfont {sf}"]
        cmd.append(str(src))
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=TIMEOUT_S, check=False)
        ok = proc.returncode == 0 and tmp.is_file() and tmp.stat().st_size > 44
        if not ok:
            lines = [ln.strip() for ln in (proc.stderr + "\n" + proc.stdout).splitlines() if ln.strip()]
            why = lines[-1] if lines else f"exit status {proc.returncode}"
            raise ComposerError(f"{tool} could not render {src}: {why}")
        os.replace(tmp, dst)
    except subprocess.TimeoutExpired:
        raise ComposerError(f"{tool} took more than {TIMEOUT_S} s to render {src}") from None
    except OSError as e:
        raise ComposerError(f"cannot run {tool} or write {dst}: {e.strerror or e}") from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return RenderResult(dst, tool, sf, dst.stat().st_size)
