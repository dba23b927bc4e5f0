"""Rules without HTTP: sessions, download links, import, seeding."""
