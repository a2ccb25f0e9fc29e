"""Where steps run. `base.Backend` is the contract; `local` runs processes, `kubernetes` Jobs."""

from .base import Backend, Outcome, StepLaunch

__all__ = ["Backend", "Outcome", "StepLaunch"]
