"""Pure functions over results (numpy arrays and pandas frames); imports nothing of the project."""
