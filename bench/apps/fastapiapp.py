"""FastAPI JSON endpoint: the ASGI twin of flaskapp.py / djangoapp.py.

`GET /json` (and `/`) -> {"message": "Hello, World!"} from an `async def`
path operation returning a dict, the idiomatic FastAPI way (FastAPI encodes
it with jsonable_encoder and answers with a JSONResponse). Defaults
otherwise: the /docs and /openapi.json routes stay, as in a real project.
"""

from fastapi import FastAPI

app = FastAPI()


@app.get("/")
@app.get("/json")
async def json_view():
    return {"message": "Hello, World!"}
