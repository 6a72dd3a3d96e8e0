"""Article 003: a tiny MLP that learns, unsupervised, to wrap a square onto a sphere."""
