"""Tests of the console server (vakta server): API, authorisation, audit, durability."""
