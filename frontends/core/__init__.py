"""What both apps share and neither framework knows: the form model (``form``), session and
identity (``session``), the cached predict, history rows and CSV scoring (``predictions``),
feedback texts, the app's experiment and the tracking warm-up (``feedback``), class
probabilities (``proba``), example rows (``example``) and chat helpers (``chat``). Imports the
SDK's public modules, never Streamlit or Gradio."""
