"""``lit-dpo judge``: a blind A/B page where people vote between the reference's and the policy's
answers of a ``lit-dpo compare`` folder.

``pairs`` reads ``compare.json``; ``store`` keeps the shown layouts and the votes in SQLite beside
it; ``results`` turns votes into win rates with Wilson intervals and Cohen's kappa (pure);
``export`` writes them as JSON, CSV and ``human_votes.json``; ``app`` is the local HTTP server and
``page`` its results page; ``command`` the command. The page itself is ``static/``.
"""
