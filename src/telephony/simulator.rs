//! A simulated phone network: the default when no provider is configured. Calls "ring" in
//! memory until a person or a test answers and presses keys through the HTTP API or the
//! CLI; every step produces the same provider-neutral events a real provider's webhooks do.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use serde::Serialize;
use tokio::sync::mpsc;
use uuid::Uuid;

use super::{CallRequest, PlacedCall, Provider, ProviderError, SmsRequest};
use crate::domain::call::{CallEvent, CallEventKind, InputEvent};
use crate::domain::intent::SpeechResult;
use crate::domain::menu::Reply;

/// Simulated calls kept for inspection; the oldest ended ones are dropped beyond this.
const KEEP_CALLS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum SimState {
    Ringing,
    Answered,
    Ended,
}

/// One simulated phone call, as the virtual phone sees it.
#[derive(Debug, Clone, Serialize)]
pub struct SimCall {
    pub id: String,
    pub call_id: Uuid,
    /// Masked: the simulator's listing is not a place for phone numbers.
    pub to: String,
    pub state: SimState,
    /// What the phone has said so far, in order.
    pub heard: Vec<String>,
    /// Whether the phone is waiting for a key (or a spoken answer).
    pub awaiting_key: bool,
    /// Where the call was connected (key 4): the room's destination, phone numbers masked.
    pub connected_to: Option<String>,
    /// The responders' conference the call joined (key 5).
    pub conference: Option<String>,
    #[serde(skip)]
    greeting: Reply,
    /// The name the call speaks, hidden from views that may not show it.
    #[serde(skip)]
    patient_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SimError {
    #[error("no simulated call {0}; `alertcall sim list` shows the calls")]
    NoSuchCall(String),
    #[error("simulated call {0} has ended")]
    Ended(String),
    #[error("simulated call {0} is still ringing: answer it first")]
    NotAnswered(String),
    #[error("simulated call {0} is connected or in a conference: the menu no longer listens")]
    NotListening(String),
    #[error("keys must be 1 to 20 of 0-9, * and #")]
    BadKeys,
    #[error("speech must be 1 to 500 characters with a confidence between 0 and 1")]
    BadSpeech,
}

/// A text message the simulated network delivered.
#[derive(Debug, Clone, Serialize)]
pub struct SimSms {
    pub id: String,
    /// Masked, like calls.
    pub to: String,
    pub text: String,
    #[serde(skip)]
    patient_name: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// What a view shows instead of a patient's name it may not show.
pub const NAME_HIDDEN: &str = "[name hidden]";

fn hide(text: &str, name: Option<&str>) -> String {
    match name {
        Some(name) => text.replace(name, NAME_HIDDEN),
        None => text.to_string(),
    }
}

impl SimCall {
    /// The call as a view that may not show patient names sees it.
    pub fn without_patient_name(mut self) -> SimCall {
        let name = self.patient_name.take();
        for line in &mut self.heard {
            *line = hide(line, name.as_deref());
        }
        self
    }
}

impl SimSms {
    /// The text as a view that may not show patient names sees it.
    pub fn without_patient_name(mut self) -> SimSms {
        self.text = hide(&self.text, self.patient_name.take().as_deref());
        self
    }
}

type Calls = Arc<Mutex<BTreeMap<String, SimCall>>>;

pub struct Simulator {
    calls: Calls,
    sms: Mutex<Vec<SimSms>>,
    events: mpsc::UnboundedSender<CallEvent>,
    /// A call nobody picks up ends `unanswered` after this long, as Vonage's does
    /// (`ALERTCALL_RINGING_TIMER`).
    ringing_timer: Duration,
}

impl Simulator {
    /// The simulator and the stream of call events it produces (the engine consumes them
    /// exactly as it consumes webhooks).
    pub fn new(ringing_timer: Duration) -> (Simulator, mpsc::UnboundedReceiver<CallEvent>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (
            Simulator {
                calls: Arc::new(Mutex::new(BTreeMap::new())),
                sms: Mutex::new(Vec::new()),
                events: tx,
                ringing_timer,
            },
            rx,
        )
    }

    fn emit(&self, call: &SimCall, kind: CallEventKind) {
        emit(&self.events, call, kind);
    }

    /// Text messages sent, oldest first (the last 1,000).
    pub fn messages(&self) -> Vec<SimSms> {
        self.sms.lock().expect("sim lock").clone()
    }

    pub fn list(&self) -> Vec<SimCall> {
        self.calls
            .lock()
            .expect("sim lock")
            .values()
            .cloned()
            .collect()
    }

    pub fn get(&self, id: &str) -> Result<SimCall, SimError> {
        self.calls
            .lock()
            .expect("sim lock")
            .get(id)
            .cloned()
            .ok_or_else(|| SimError::NoSuchCall(id.to_string()))
    }

    /// Picks up: the phone hears the greeting.
    pub fn answer(&self, id: &str) -> Result<SimCall, SimError> {
        let call = {
            let mut calls = self.calls.lock().expect("sim lock");
            let call = calls
                .get_mut(id)
                .ok_or_else(|| SimError::NoSuchCall(id.to_string()))?;
            match call.state {
                SimState::Ended => return Err(SimError::Ended(id.to_string())),
                SimState::Answered => return Ok(call.clone()),
                SimState::Ringing => {}
            }
            call.state = SimState::Answered;
            call.heard.push(call.greeting.text().to_string());
            call.awaiting_key = call.greeting.awaits_input();
            call.clone()
        };
        self.emit(&call, CallEventKind::PickedUp);
        self.emit(&call, CallEventKind::Human);
        Ok(call)
    }

    /// Presses keys: returns the input event for the engine to act on. The engine's reply
    /// goes back through [`Simulator::hear`].
    pub fn press(&self, id: &str, keys: &str) -> Result<InputEvent, SimError> {
        if keys.is_empty()
            || keys.len() > 20
            || !keys
                .chars()
                .all(|c| c.is_ascii_digit() || c == '*' || c == '#')
        {
            return Err(SimError::BadKeys);
        }
        self.input(id, keys, false, Vec::new())
    }

    /// Lets the keypad time out without a key, as a nurse who says nothing would.
    pub fn silence(&self, id: &str) -> Result<InputEvent, SimError> {
        self.input(id, "", true, Vec::new())
    }

    /// Speaks an answer, as the provider's recogniser would report it (confidence 0–1).
    pub fn say(&self, id: &str, text: &str, confidence: f64) -> Result<InputEvent, SimError> {
        let length = text.trim().chars().count();
        if !(1..=500).contains(&length) || !(0.0..=1.0).contains(&confidence) {
            return Err(SimError::BadSpeech);
        }
        let heard = SpeechResult {
            text: text.trim().to_string(),
            confidence: Some(confidence),
        };
        self.input(id, "", false, vec![heard])
    }

    fn input(
        &self,
        id: &str,
        keys: &str,
        timed_out: bool,
        speech: Vec<SpeechResult>,
    ) -> Result<InputEvent, SimError> {
        let call = self.get(id)?;
        match call.state {
            SimState::Ended => return Err(SimError::Ended(id.to_string())),
            SimState::Ringing => return Err(SimError::NotAnswered(id.to_string())),
            SimState::Answered => {}
        }
        if !call.awaiting_key {
            // Connected to the room or in the conference: the menu is no longer listening.
            return Err(SimError::NotListening(id.to_string()));
        }
        Ok(InputEvent {
            provider_call_id: call.id,
            call_id: Some(call.call_id),
            digits: keys.to_string(),
            timed_out,
            speech,
            at: Some(format!("{}", Uuid::new_v4())),
        })
    }

    /// The phone plays the engine's reply; a final reply hangs up.
    pub fn hear(&self, id: &str, reply: &Reply) -> Result<SimCall, SimError> {
        let call = {
            let mut calls = self.calls.lock().expect("sim lock");
            let call = calls
                .get_mut(id)
                .ok_or_else(|| SimError::NoSuchCall(id.to_string()))?;
            call.heard.push(reply.text().to_string());
            call.awaiting_key = reply.awaits_input();
            match reply {
                Reply::Connect { to, .. } => call.connected_to = Some(to.masked()),
                Reply::Conference { name, .. } => call.conference = Some(name.clone()),
                Reply::Prompt { .. } | Reply::Say { .. } => {}
            }
            if reply.ends_call() {
                call.state = SimState::Ended;
            }
            call.clone()
        };
        if reply.ends_call() {
            self.emit(&call, CallEventKind::Completed);
        }
        Ok(call)
    }

    /// The nurse hangs up (or declines, if still ringing).
    pub fn hang_up(&self, id: &str) -> Result<SimCall, SimError> {
        self.end(id, CallEventKind::Rejected)
    }

    /// Ends the call; `unanswered` is what a call still ringing reports: `rejected` when the
    /// nurse declines, `cancelled` when we (the caller) stop it, as Vonage reports them.
    fn end(&self, id: &str, unanswered: CallEventKind) -> Result<SimCall, SimError> {
        end(
            &self.calls,
            &self.events,
            id,
            unanswered,
            Some(CallEventKind::Completed),
        )
    }
}

fn emit(events: &mpsc::UnboundedSender<CallEvent>, call: &SimCall, kind: CallEventKind) {
    // The receiver lives as long as the engine; after shutdown there is nobody to tell.
    let _ = events.send(CallEvent {
        provider_call_id: call.id.clone(),
        call_id: Some(call.call_id),
        kind,
        detail: None,
        at: Some(Utc::now().to_rfc3339()),
    });
}

/// Ends a call: `if_ringing` is reported for a call nobody picked up; an answered call
/// reports `if_answered`, or is left alone with `None` (the ringing timer's case).
fn end(
    calls: &Calls,
    events: &mpsc::UnboundedSender<CallEvent>,
    id: &str,
    if_ringing: CallEventKind,
    if_answered: Option<CallEventKind>,
) -> Result<SimCall, SimError> {
    let (call, kind) = {
        let mut calls = calls.lock().expect("sim lock");
        let call = calls
            .get_mut(id)
            .ok_or_else(|| SimError::NoSuchCall(id.to_string()))?;
        let kind = match (call.state, if_answered) {
            (SimState::Ended, _) => return Err(SimError::Ended(id.to_string())),
            (SimState::Ringing, _) => if_ringing,
            (SimState::Answered, Some(kind)) => kind,
            (SimState::Answered, None) => return Ok(call.clone()),
        };
        call.state = SimState::Ended;
        call.awaiting_key = false;
        (call.clone(), kind)
    };
    emit(events, &call, kind);
    Ok(call)
}

#[async_trait]
impl Provider for Simulator {
    fn name(&self) -> &'static str {
        "simulator"
    }

    async fn place_call(&self, request: &CallRequest) -> Result<PlacedCall, ProviderError> {
        let id = format!("SIM-{}", Uuid::new_v4().simple());
        let call = SimCall {
            id: id.clone(),
            call_id: request.call_id,
            to: request.to.masked(),
            state: SimState::Ringing,
            heard: Vec::new(),
            awaiting_key: false,
            connected_to: None,
            conference: None,
            greeting: request.greeting.clone(),
            patient_name: request.patient_name.clone(),
            created_at: Utc::now(),
        };
        {
            let mut calls = self.calls.lock().expect("sim lock");
            if calls.len() >= KEEP_CALLS
                && let Some(oldest) = calls
                    .iter()
                    .filter(|(_, c)| c.state == SimState::Ended)
                    .min_by_key(|(_, c)| c.created_at)
                    .map(|(k, _)| k.clone())
            {
                calls.remove(&oldest);
            }
            calls.insert(id.clone(), call.clone());
        }
        tracing::info!(
            sim_call = %id,
            to = %request.to.masked(),
            "SIMULATED CALL ringing: answer it with `alertcall sim answer {id}` then `alertcall sim press {id} 1`"
        );
        tracing::debug!(sim_call = %id, text = %request.greeting.text(), "simulated call says");
        self.emit(&call, CallEventKind::Started);
        self.emit(&call, CallEventKind::Ringing);
        let (calls, events, ringing_timer, ringing) = (
            self.calls.clone(),
            self.events.clone(),
            self.ringing_timer,
            id.clone(),
        );
        tokio::spawn(async move {
            tokio::time::sleep(ringing_timer).await;
            // Answered or ended meanwhile: nothing to do.
            let _ = end(&calls, &events, &ringing, CallEventKind::Unanswered, None);
        });
        Ok(PlacedCall {
            provider_call_id: id,
        })
    }

    async fn send_sms(&self, sms: &SmsRequest) -> Result<String, ProviderError> {
        let id = format!("SIMSMS-{}", Uuid::new_v4().simple());
        let mut all = self.sms.lock().expect("sim lock");
        if all.len() >= KEEP_CALLS {
            all.remove(0);
        }
        all.push(SimSms {
            id: id.clone(),
            to: sms.to.masked(),
            text: sms.text.clone(),
            patient_name: sms.patient_name.clone(),
            created_at: Utc::now(),
        });
        tracing::info!(sms = %id, to = %sms.to.masked(), "SIMULATED SMS sent");
        Ok(id)
    }

    async fn hang_up(&self, provider_call_id: &str) -> Result<(), ProviderError> {
        match self.end(provider_call_id, CallEventKind::Cancelled) {
            Ok(_) | Err(SimError::Ended(_)) => Ok(()),
            Err(e) => Err(ProviderError::Permanent(e.to_string())),
        }
    }
}
