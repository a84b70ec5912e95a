"""Flask JSON endpoint (TechEmpower-style "json" test)."""

from flask import Flask

app = Flask(__name__)


@app.get("/")
@app.get("/json")
def json_view():
    return {"message": "Hello, World!"}
