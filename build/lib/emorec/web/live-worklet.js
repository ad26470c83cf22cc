// Audio thread of the live view: hands each 128-sample render quantum of the microphone to the page,
// which batches them into 100 ms PCM blocks for /v1/stream.
"use strict";
class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}
registerProcessor("emorec-capture", Capture);
