"""onbeat: real-time beat, onset and music analysis.

The sub-packages live in the repository's top-level folders and install as
``onbeat.realtime``, ``onbeat.models``, ``onbeat.training`` and ``onbeat.gui``.
"""

__version__ = "0.1.0"
