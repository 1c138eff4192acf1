"""A run's life: the runner that measures each cell, the estimate, the progress display,
the services a run starts first."""
