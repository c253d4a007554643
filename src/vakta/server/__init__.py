"""The Vakta console server: agents report alerts, analysts work incidents, auditors check the record.

Needs the ``server`` extra (``pip install 'vakta[server]'``); nothing here is
imported by the rest of Vakta, so scans never pay for FastAPI or SQLAlchemy.
"""
