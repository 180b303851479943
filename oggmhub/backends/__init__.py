"""The two backends: :mod:`.local` (one machine) and :mod:`.kubernetes` (the z2jh chart).

Both take a validated choice from :class:`oggmhub.picker.CatalogPickerMixin` and do the
same with it (see :mod:`.base`).
"""
