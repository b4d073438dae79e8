"""Web frontends (Streamlit, Gradio) over :class:`client.Predictor`, sharing one form description."""
