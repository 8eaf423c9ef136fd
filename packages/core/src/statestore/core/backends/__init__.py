"""Reference backends shipped with the core: ``memory`` and ``local``."""
