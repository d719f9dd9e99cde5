"""Next-round generation: sample replies from chosen checkpoints and open a campaign's next round.

`services` checks, queues and runs a request; `views` is the "Generate next round" page, `api`
its REST endpoint, `tasks` the worker's side and `urls` their routes.
"""
