"""Cohorts (workshops and classes): a named group of users with a time window and rules.

:mod:`.model` (pure rules), :mod:`.store` (the hub's database), :mod:`.service` (API and
pages inside the hub), :mod:`.window` (the service that ends windows), :mod:`.homes`,
:mod:`.joincodes`, :mod:`.materials`, :mod:`.client` (REST client) and :mod:`.cli`.
"""
