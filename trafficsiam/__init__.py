"""trafficsiam: tell good traffic from known failures and spot new kinds of failure.

The pipeline, one module per stage:

    read -> validate -> normalise -> triplets -> train -> embed -> cluster -> (score -> report)

`trafficsiam.api` composes the stages; the CLI is a thin layer over it.
"""

__version__ = "0.1.0"
