"""Retrieval: the Encoder protocol, FAISS indexes and the Retriever API."""
