"""Neural network modules (``torch.nn.Module``), their committed weights and the model registry.

This package never imports ``onbeat.realtime``, ``onbeat.gui`` or ``onbeat.training``.
"""
