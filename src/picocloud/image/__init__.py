"""Image service (Glance v2): images, members, their data, and inspection of uploaded bytes."""
