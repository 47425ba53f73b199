"""composer: learn music from a folder of MIDI files with an LSTM and write new pieces."""

__version__ = "0.1.0"
