"""Auto-redrive: opt-in policies that send matching dead letters back to run on their own."""

from genqueue.autoredrive.policy import AutoRedrivePolicy
from genqueue.autoredrive.runner import AutoRedriver

__all__ = ["AutoRedrivePolicy", "AutoRedriver"]
