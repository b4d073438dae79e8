"""Laptop tooling, never imported by the SDK: demo models (``demo``, ``demo_iris``, ``demo_agent``),
MLflow's own servers at a workspace's URL shape (``serve``), and the ``predictor`` command (``cli``)."""
