"""A small Flask app served by edge.

    edge app:app --pythonpath examples/flaskapp --bind 127.0.0.1:8000
    (with Flask installed, or `[app] venv = "..."` pointing at a venv that has it)

Routes:
    GET  /            an HTML page
    GET  /api/items   a JSON list of items
    GET  /api/items/<id>  one item, or a JSON 404
    POST /echo        echoes the posted body back as JSON
"""
from flask import Flask, jsonify, request

app = Flask(__name__)

ITEMS = [
    {"id": 1, "name": "apple", "price": 1.25},
    {"id": 2, "name": "banana", "price": 0.5},
    {"id": 3, "name": "cherry", "price": 3.0},
]

PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>edge + Flask</title></head>
<body>
  <h1>Hello from Flask on edge</h1>
  <p>Try <a href="/api/items">/api/items</a> or POST to <code>/echo</code>.</p>
</body>
</html>
"""


@app.get("/")
def index():
    return PAGE


@app.get("/api/items")
def items():
    return jsonify(items=ITEMS, count=len(ITEMS))


@app.get("/api/items/<int:item_id>")
def item(item_id):
    for it in ITEMS:
        if it["id"] == item_id:
            return jsonify(it)
    return jsonify(error="not found", id=item_id), 404


@app.post("/echo")
def echo():
    data = request.get_data()
    return jsonify(
        method=request.method,
        content_type=request.content_type,
        length=len(data),
        body=data.decode("utf-8", "replace"),
        form=request.form.to_dict() if request.form else None,
    )
