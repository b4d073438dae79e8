"""Web frontends over :class:`client.Predictor`: the framework-neutral ``core``, and one package
per framework (``streamlit_ui``, ``gradio_ui``)."""
