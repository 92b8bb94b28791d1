"""The pure policy modules: decisions made in the parent from their inputs alone, with no I/O and no state.

- :mod:`protoreg.policy.schemes`: which schemes may be claimed.
- :mod:`protoreg.policy.urls`: WHATWG URL resolution with the registered schemes as special.
- :mod:`protoreg.policy.origins`: origins of URLs.
- :mod:`protoreg.policy.trust`: W3C Secure Contexts (potentially trustworthy origins and URLs).
- :mod:`protoreg.policy.csp`: Content Security Policy parsing, combination and effective directives.
- :mod:`protoreg.policy.cors`: Fetch's CORS decisions.
- :mod:`protoreg.policy.matchpatterns`: WebExtension match patterns (host permissions).

Nothing is imported here, so importing one module does not pull in the others.
"""
