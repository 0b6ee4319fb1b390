"""One module per revision of the job store's schema, oldest first (r0001, r0002, ...)."""
