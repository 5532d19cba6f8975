"""Errors a user can act on.

Every error raised for bad input or a missing resource is a :class:`SlmkitError`; the CLI prints its
message (which names the file, line, field or model at fault and what to do) without a traceback.
"""

from __future__ import annotations


class SlmkitError(Exception):
    """Base class for errors caused by input or environment rather than by a bug."""


class InputError(SlmkitError):
    """A source file, record or field cannot be used as given."""


class ModelNotFoundError(SlmkitError):
    """A model name, folder or hub id cannot be resolved to weights."""


class KnowledgeBaseError(SlmkitError):
    """A knowledge base folder is missing, incomplete or incompatible with the request."""


class ConfigError(SlmkitError):
    """A recipe or option has an unknown key or an invalid value."""


class BackendUnavailableError(SlmkitError):
    """A remote generator (OpenAI-compatible server) cannot be reached, even after retries."""
