"""The desktop visualizer (pyqtgraph). It only reads events and read-only views."""
