"""Identity service (Keystone v3): users, projects, roles, the catalog and tokens."""
