"""Reporting to a Vakta console as an enrolled client: identity, HTTP client, offline queue, delivery.

Used by the front ends that send alerts to a console (the endpoint agent,
the ICAP service); nothing here knows about either.
"""
