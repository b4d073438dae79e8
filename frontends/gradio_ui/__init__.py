"""The Gradio app: the page and its server entry (``app``), feedback controls (``feedback``) and
the chat page (``chat_page``). Named so that it cannot shadow the ``gradio`` library."""
