"""Model architectures behind one registry and one batch contract (see docs/ARCHITECTURE.md)."""

from emorec.models.registry import (
    create_model,
    list_models,
    model_arguments,
    model_info,
    register_model,
)

__all__ = ["create_model", "list_models", "model_arguments", "model_info", "register_model"]
