"""The rollback function's settings (parsed once from the environment) and its boto3 clients."""

from __future__ import annotations

from function_setup import AwsClients, aws_client, settings_loader

from contracts.function_settings import RollbackSettings

# The model lives in contracts/function_settings.py: the stack writes the environment with it.
Settings = RollbackSettings
# The shared client factory and clients (lambda/shared/function_setup.py); tests clear its cache through here.
__all__ = ["AwsClients", "Settings", "aws_client", "load_settings"]


# Parsed once per execution environment (lambda/shared/function_setup.py).
load_settings = settings_loader(Settings)
