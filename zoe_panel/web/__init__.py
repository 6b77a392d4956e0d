"""The HTTP layer in front of Streamlit (serve.py's ``st.App``): who the client is, which
sessions may upload, and the panel's own streaming model-upload route. Pure ASGI/Starlette code,
testable without a browser; nothing here imports streamlit."""
