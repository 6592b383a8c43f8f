"""The Pulumi toolchain versions a controller must hold to run the scaler (pure data).

The same pins as ``engine.toolchain``, which the deployer uses; a suite test keeps the two
equal. Kept here so renderers need nothing from the engine layer.
"""

PULUMI_CLI_VERSION = "3.274.1"
COMMAND_PROVIDER_VERSION = "1.2.1"
