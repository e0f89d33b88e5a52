"""What the tests share besides fixtures (those live in conftest.py), one module per concern:

* ``data``: records made straight in the database or through the API, and readers of what the app wrote;
* ``pages``: the dashboard driven over HTTP like a browser (sign-in, CSRF tokens, flashes);
* ``access``: the access-control matrix of every route, built from the route table;
* ``routes``: the route table, read the way the access tests need it;
* ``mail``: the mails the console backend filed;
* ``redis_store``: the Redis the shared-limit tests use;
* ``receiver``: a scripted webhook receiver on loopback;
* ``browser``: the real server and the Chromium the browser tests share.
"""
