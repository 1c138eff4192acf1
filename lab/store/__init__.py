"""What a run leaves on disk: the results store and the environment it ran in."""
