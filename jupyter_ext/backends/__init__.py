"""Where steps run. `base.Backend` is the contract; `local` runs processes, `kubernetes` Jobs."""

from .base import Backend, Handle, Outcome, StepLaunch

__all__ = ["Backend", "Handle", "Outcome", "StepLaunch"]
