"""What both apps share and neither framework knows: the form model (``form``), session and
identity (``session``), class probabilities (``proba``), example rows (``example``) and chat helpers
(``chat``). Imports the SDK, never Streamlit or Gradio."""
