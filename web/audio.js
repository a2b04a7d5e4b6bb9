/* audio.js -- push-to-talk audio for one room: a WebRTC peer connection with
 * the server's media service (mediad), signaled with `media` frames
 * (docs/protocol.md): the browser offers (`offer {sdp}`, trickled `candidate
 * {candidate, mid}`), mediad answers (`answer {sdp}`, `candidate`), and
 * `restart` means the media path was lost: offer again.
 *
 * The microphone track is always attached but muted (track.enabled = false)
 * unless this user holds the floor, so talking starts without renegotiation.
 * A server without a media service answers the offer with error 4500: the
 * state becomes `unavailable` with the reason, and the next start() tries
 * again. States: off, starting, connecting, connected, waiting (offline: will
 * offer once connected), unavailable, failed.
 */

export class RoomAudio extends EventTarget {
  constructor(client, room, audioEl) {
    super();
    this.client = client;
    this.room = room;
    this.audioEl = audioEl;
    this.state = 'off';
    this.reason = '';
    this.pc = null;
    this.stream = null;
    this.track = null;
    this.talking = false;
    this.remoteCandidates = [];
    this.onMedia = (ev) => this.handleMedia(ev.detail);
    this.onError = (ev) => this.handleError(ev.detail);
    this.onState = (ev) => {
      if (ev.detail.state === 'connected' && this.state === 'waiting') this.offer();
    };
    client.addEventListener('media', this.onMedia);
    client.addEventListener('error', this.onError);
    client.addEventListener('state', this.onState);
  }

  setState(state, reason = '') {
    this.state = state;
    this.reason = reason;
    this.dispatchEvent(new CustomEvent('state', { detail: { room: this.room, state, reason } }));
  }

  get active() { return ['starting', 'connecting', 'connected', 'waiting'].includes(this.state); }

  /* Asks for the microphone (call it from a user gesture: autoplay and
   * permission rules want one) and offers. A no-op while active. */
  async start() {
    if (this.active) return;
    if (!navigator.mediaDevices || !window.RTCPeerConnection) {
      this.setState('failed', 'this browser has no WebRTC audio (a secure context is needed: https or 127.0.0.1)');
      return;
    }
    this.setState('starting', 'asking for the microphone');
    try {
      if (!this.stream) {
        this.stream = await navigator.mediaDevices.getUserMedia({ audio: true, video: false });
        this.track = this.stream.getAudioTracks()[0];
      }
    } catch (e) {
      this.setState('failed', `no microphone: ${e.message}`);
      return;
    }
    this.track.enabled = this.talking;
    await this.offer();
  }

  async offer() {
    this.closePc();
    const pc = new RTCPeerConnection({ iceServers: [], bundlePolicy: 'max-bundle', rtcpMuxPolicy: 'require' });
    this.pc = pc;
    this.remoteCandidates = [];
    pc.addTransceiver(this.track, { direction: 'sendrecv', streams: [this.stream] });
    pc.ontrack = (ev) => {
      if (this.pc !== pc) return;
      this.audioEl.srcObject = ev.streams[0] || new MediaStream([ev.track]);
      this.audioEl.play().catch(() => { /* autoplay refused: the next gesture plays */ });
    };
    pc.onicecandidate = (ev) => {
      if (this.pc === pc && ev.candidate && ev.candidate.candidate) {
        this.client.sendMedia(this.room, 'candidate', { candidate: ev.candidate.candidate, mid: ev.candidate.sdpMid });
      }
    };
    pc.onconnectionstatechange = () => {
      if (this.pc !== pc) return;
      if (pc.connectionState === 'connected') this.setState('connected', '');
      else if (pc.connectionState === 'failed') this.setState('failed', 'the audio path failed (ICE/DTLS)');
    };
    try {
      const offer = await pc.createOffer();
      await pc.setLocalDescription(offer);
    } catch (e) {
      this.setState('failed', `cannot create an offer: ${e.message}`);
      return;
    }
    if (this.pc !== pc) return;
    if (!this.client.sendMedia(this.room, 'offer', { sdp: pc.localDescription.sdp })) {
      this.setState('waiting', 'offline: the offer goes out once connected');
      return;
    }
    this.setState('connecting', "waiting for the server's answer");
  }

  async handleMedia(f) {
    if (f.room !== this.room || !this.pc) return;
    const pc = this.pc;
    try {
      if (f.action === 'answer' && f.sdp) {
        await pc.setRemoteDescription({ type: 'answer', sdp: f.sdp });
        for (const c of this.remoteCandidates.splice(0)) await pc.addIceCandidate(c);
      } else if (f.action === 'candidate' && f.candidate) {
        const c = { candidate: f.candidate, sdpMid: f.mid ?? '0' };
        if (pc.remoteDescription) await pc.addIceCandidate(c);
        else this.remoteCandidates.push(c);
      } else if (f.action === 'restart') {
        this.setState('connecting', `media path lost (${f.reason || 'restart'}): offering again`);
        await this.offer();
      }
    } catch (e) {
      if (this.pc === pc) this.setState('failed', `signaling: ${e.message}`);
    }
  }

  handleError(err) {
    if (!err.about || err.about.type !== 'media' || err.about.room !== this.room || !this.active) return;
    this.closePc();
    this.releaseMic();
    this.code = err.code;
    this.setState('unavailable', `${err.reason || 'server error'} (${err.code})`);
  }

  /* RTP packet counters of the audio path ({received, sent}), for the
   * console's diagnostics and the tests. */
  async counters() {
    const out = { received: 0, sent: 0 };
    if (!this.pc) return out;
    (await this.pc.getStats()).forEach((r) => {
      if (r.type === 'inbound-rtp' && r.kind === 'audio') out.received += r.packetsReceived || 0;
      if (r.type === 'outbound-rtp' && r.kind === 'audio') out.sent += r.packetsSent || 0;
    });
    return out;
  }

  /* Unmutes the microphone while this user holds the floor. */
  setTalking(on) {
    this.talking = on;
    if (this.track) this.track.enabled = on;
  }

  closePc() {
    if (this.pc) {
      this.pc.close();
      this.pc = null;
    }
  }

  releaseMic() {
    if (this.stream) for (const t of this.stream.getTracks()) t.stop();
    this.stream = null;
    this.track = null;
  }

  /* Leaves the room's audio for good. */
  stop() {
    if (this.pc) this.client.sendMedia(this.room, 'leave');
    this.closePc();
    this.releaseMic();
    this.client.removeEventListener('media', this.onMedia);
    this.client.removeEventListener('error', this.onError);
    this.client.removeEventListener('state', this.onState);
    this.setState('off', '');
  }
}
