"""Cohorts (workshops and classes): a named group of users with a time window and rules.

:mod:`.model` (the record, pure), :mod:`.validation`, :mod:`.store` (the hub's database),
:mod:`.powers` (what organisers may do to accounts), :mod:`.settings` (``c.Cohorts``),
:mod:`.rules` (who may do what to which cohort and member), :mod:`.routes` (the API and
pages inside the hub: :mod:`.api`, :mod:`.pages`, :mod:`.invitations`), :mod:`.window`
(the service that ends windows), :mod:`.homes`, :mod:`.joincodes`, :mod:`.materials`,
:mod:`.client` (REST client) and :mod:`.cli`.
"""
