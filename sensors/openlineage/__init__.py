"""OpenLineage: the publisher (``publisher``) that turns eventflow's runs into OpenLineage
RunEvents. Needs the ``openlineage`` extra (openlineage-python).
"""
