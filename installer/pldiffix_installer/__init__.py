"""The pldiffix installer: deploys the SQL objects and server-side Python into a database."""
