"""A FastAPI app for tests/asgi.rs and tests/asgi_websocket.rs (needs the
test venv: fastapi, pydantic, starlette).

HTTP:
  GET  /items/{item_id}?q=&limit=   path + query params (item_id: int)
  POST /items                       JSON body validated by pydantic (422 on bad input)
  GET  /stream?n=N                  StreamingResponse of N lines "line i of N\\n"
  POST /tasks/{key}?delay=F         answers at once; a BackgroundTask sleeps F s
                                    then records key -> worker pid
  GET  /tasks/{key}                 {"done": bool, "pid": recorded pid or null}
  GET  /lifespan                    what the lifespan startup put in the state
  GET  /disconnect/{key}            reads the body, then awaits the next
                                    receive() (up to 30 s) and records its type
  GET  /disconnect/{key}/seen       {"state": "waiting" | the recorded type | null}
  GET  /pid                         {"pid"}

WebSocket:
  /ws/echo          accepts (with the last offered subprotocol, if any)
                    and echoes text and bytes; the text "close:CODE" makes
                    the app close with CODE and reason "app-close"; when the
                    client closes, its code and reason are recorded
  /ws/last-close    (HTTP GET) {"code", "reason"} of the last client close
  /ws/reject        closes (code 1008) before accepting: the handshake gets 403
  /ws/info          accepts and sends {"subprotocols", "path", "query"} as JSON
"""
import asyncio
import contextlib
import os
from typing import List, Optional

from fastapi import BackgroundTasks, FastAPI, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

TASKS = {}
SEEN = {}
LAST_CLOSE = {"code": None, "reason": None}


@contextlib.asynccontextmanager
async def lifespan(app):
    yield {"greeting": "hello from lifespan", "startup_pid": os.getpid()}


app = FastAPI(lifespan=lifespan)


class Item(BaseModel):
    name: str = Field(min_length=1)
    price: float = Field(gt=0)
    quantity: int = 1
    tags: List[str] = []


@app.get("/pid")
async def pid():
    return {"pid": os.getpid()}


@app.get("/items/{item_id}")
async def read_item(item_id: int, q: Optional[str] = None, limit: int = 10):
    return {"item_id": item_id, "q": q, "limit": limit}


@app.post("/items")
async def create_item(item: Item):
    return {
        "name": item.name,
        "price": item.price,
        "quantity": item.quantity,
        "tags": item.tags,
        "total": item.price * item.quantity,
    }


@app.get("/stream")
async def stream(n: int = 10):
    async def lines():
        for i in range(n):
            yield "line %d of %d\n" % (i, n)
            await asyncio.sleep(0)

    return StreamingResponse(lines(), media_type="text/plain")


async def record_task(key: str, delay: float):
    await asyncio.sleep(delay)
    TASKS[key] = os.getpid()


@app.post("/tasks/{key}")
async def queue_task(key: str, background_tasks: BackgroundTasks, delay: float = 0.0):
    background_tasks.add_task(record_task, key, delay)
    return {"queued": key}


@app.get("/tasks/{key}")
async def task_status(key: str):
    return {"done": key in TASKS, "pid": TASKS.get(key)}


@app.get("/lifespan")
async def lifespan_state(request: Request):
    return {
        "greeting": getattr(request.state, "greeting", None),
        "startup_pid": getattr(request.state, "startup_pid", None),
        "pid": os.getpid(),
    }


@app.get("/disconnect/{key}")
async def disconnect(key: str, request: Request):
    await request.body()
    SEEN[key] = "waiting"
    try:
        msg = await asyncio.wait_for(request.receive(), 30)
        SEEN[key] = msg.get("type")
    except asyncio.TimeoutError:
        SEEN[key] = "timeout"
    return {"seen": SEEN[key]}


@app.get("/disconnect/{key}/seen")
async def disconnect_seen(key: str):
    return {"state": SEEN.get(key), "pid": os.getpid()}


@app.websocket("/ws/echo")
async def ws_echo(websocket: WebSocket):
    offered = websocket.scope.get("subprotocols") or []
    await websocket.accept(subprotocol=offered[-1] if offered else None)
    try:
        while True:
            msg = await websocket.receive()
            if msg["type"] == "websocket.disconnect":
                LAST_CLOSE["code"] = msg.get("code")
                LAST_CLOSE["reason"] = msg.get("reason")
                return
            text = msg.get("text")
            if text is not None:
                if text.startswith("close:"):
                    await websocket.close(code=int(text[6:]), reason="app-close")
                    return
                await websocket.send_text(text)
            else:
                await websocket.send_bytes(msg.get("bytes") or b"")
    except WebSocketDisconnect as e:
        LAST_CLOSE["code"] = e.code
        LAST_CLOSE["reason"] = e.reason


@app.get("/ws/last-close")
async def ws_last_close():
    return dict(LAST_CLOSE)


@app.websocket("/ws/reject")
async def ws_reject(websocket: WebSocket):
    await websocket.close(code=1008)


@app.websocket("/ws/info")
async def ws_info(websocket: WebSocket):
    await websocket.accept()
    await websocket.send_json({
        "subprotocols": websocket.scope.get("subprotocols"),
        "path": websocket.scope.get("path"),
        "query": websocket.scope.get("query_string", b"").decode("latin-1"),
    })
    await websocket.close()
