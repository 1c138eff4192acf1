"""ASGI apps under test."""
