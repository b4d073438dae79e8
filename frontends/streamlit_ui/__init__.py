"""The Streamlit app: the page (``app``), its server entry (``server``), cached resources
(``resources``), feedback controls (``feedback``), charts (``chart``) and the chat page (``chat_page``).
Named so that it cannot shadow the ``streamlit`` library."""
