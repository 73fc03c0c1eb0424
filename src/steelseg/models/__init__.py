"""Networks: the registry of model kinds (``MODELS``), their torch modules and their weights."""
