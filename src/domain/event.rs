//! The validated input events of SPEC §2, as Rust types.
//!
//! Decoders (`domain::decode`) turn JSON or protobuf records into [`Event`]s or a
//! dead-letter reason; everything downstream of decoding works only with these types,
//! so an event that exists is known to be well-formed.

use super::time::Timestamp;
use serde::{Deserialize, Serialize};

/// Declares a closed set of wire names as an enum with `as_str`/`parse`/`ALL`.
macro_rules! wire_enum {
    ($(#[$m:meta])* $name:ident { $($variant:ident = $wire:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        pub enum $name { $(#[serde(rename = $wire)] $variant),+ }

        impl $name {
            /// Every value, in declaration order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// The value's wire name (case-sensitive).
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $wire),+ }
            }
            /// Parses a wire name; enum values are case-sensitive (SPEC §9).
            pub fn parse(s: &str) -> Option<$name> {
                match s { $($wire => Some($name::$variant),)+ _ => None }
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
#[allow(unused_imports)]
pub(crate) use wire_enum;

wire_enum!(
    /// The `type` field: which fact an event reports.
    EventType {
        OrderPaid = "order.paid",
        OrderCompleted = "order.completed",
        OrderClosed = "order.closed",
        OrderRated = "order.rated",
        LogisticsUpdate = "logistics.update",
        RefundUpdate = "refund.update",
        ServiceRated = "service.rated",
    }
);

wire_enum!(
    /// The input stream (Kafka topic role) an event type belongs to.
    Stream { Orders = "orders", Logistics = "logistics", Refunds = "refunds", Service = "service" }
);

impl EventType {
    /// The stream that carries this event type.
    pub fn stream(self) -> Stream {
        match self {
            EventType::OrderPaid
            | EventType::OrderCompleted
            | EventType::OrderClosed
            | EventType::OrderRated => Stream::Orders,
            EventType::LogisticsUpdate => Stream::Logistics,
            EventType::RefundUpdate => Stream::Refunds,
            EventType::ServiceRated => Stream::Service,
        }
    }
}

wire_enum!(Fulfillment { Merchant = "MERCHANT", Cainiao = "CAINIAO" });

wire_enum!(DeliveryPromise {
    None = "NONE",
    SameDay = "SAME_DAY",
    NextDay = "NEXT_DAY",
    DoorDelivery = "DOOR_DELIVERY",
});

wire_enum!(LogisticsStatus {
    Created = "CREATED",
    PickedUp = "PICKED_UP",
    WarehouseOutbound = "WAREHOUSE_OUTBOUND",
    ToSortingCenter = "TO_SORTING_CENTER",
    AtSortingCenter = "AT_SORTING_CENTER",
    Sorted = "SORTED",
    LeftSortingCenter = "LEFT_SORTING_CENTER",
    InTransit = "IN_TRANSIT",
    Delivered = "DELIVERED",
    DoorDelivered = "DOOR_DELIVERED",
    Rejected = "REJECTED",
    Lost = "LOST",
    Damaged = "DAMAGED",
});

impl LogisticsStatus {
    /// A sorting-center status that counts as shipped for Cainiao orders after
    /// `WAREHOUSE_OUTBOUND` (SPEC §5).
    pub fn is_sorting(self) -> bool {
        matches!(
            self,
            LogisticsStatus::ToSortingCenter
                | LogisticsStatus::AtSortingCenter
                | LogisticsStatus::Sorted
                | LogisticsStatus::LeftSortingCenter
        )
    }

    /// Whether an order's facts keep this status (shipping and delivery, SPEC §5). The others
    /// (`CREATED`, `IN_TRANSIT`, `REJECTED`, `LOST`, `DAMAGED`) change no fact and no metric:
    /// the rules leave the order's state untouched for them.
    pub fn is_recorded(self) -> bool {
        matches!(
            self,
            LogisticsStatus::PickedUp
                | LogisticsStatus::WarehouseOutbound
                | LogisticsStatus::Delivered
                | LogisticsStatus::DoorDelivered
        ) || self.is_sorting()
    }
}

wire_enum!(RefundKind { RefundOnly = "REFUND_ONLY", ReturnAndRefund = "RETURN_AND_REFUND", Exchange = "EXCHANGE" });

wire_enum!(RefundReason {
    Quality = "QUALITY",
    NotAsDescribed = "NOT_AS_DESCRIBED",
    Damaged = "DAMAGED",
    WrongItem = "WRONG_ITEM",
    MissingItem = "MISSING_ITEM",
    SevenDayNoReason = "SEVEN_DAY_NO_REASON",
    NotReceived = "NOT_RECEIVED",
    LateShipment = "LATE_SHIPMENT",
    Other = "OTHER",
});

impl RefundReason {
    /// Quality-related reasons count for `quality_refund_rate` (SPEC §2).
    pub fn is_quality(self) -> bool {
        matches!(self, RefundReason::Quality | RefundReason::NotAsDescribed | RefundReason::Damaged)
    }
}

wire_enum!(
    /// The `stage` field of `refund.update`, without its stage-specific fields.
    RefundStageName {
        Requested = "REQUESTED",
        Modified = "MODIFIED",
        MerchantAgreed = "MERCHANT_AGREED",
        MerchantRejected = "MERCHANT_REJECTED",
        ReturnShipped = "RETURN_SHIPPED",
        ReturnReceived = "RETURN_RECEIVED",
        PlatformIntervened = "PLATFORM_INTERVENED",
        PlatformRuled = "PLATFORM_RULED",
        Completed = "COMPLETED",
        LabelConfirmed = "LABEL_CONFIRMED",
    }
);

wire_enum!(Liable { Merchant = "MERCHANT", Buyer = "BUYER" });

wire_enum!(ClosedBy { Merchant = "MERCHANT", Platform = "PLATFORM", SystemTimeout = "SYSTEM_TIMEOUT", Buyer = "BUYER" });

wire_enum!(
    /// Malicious-refund labels (云标签).
    MaliciousLabel {
        ReturnMissingItems = "RETURN_MISSING_ITEMS",
        ReturnSwapped = "RETURN_SWAPPED",
        FakeReturnLogistics = "FAKE_RETURN_LOGISTICS",
        FreightInsuranceAbuse = "FREIGHT_INSURANCE_ABUSE",
        ReturnNotIntact = "RETURN_NOT_INTACT",
        ReceivedButRefundOnly = "RECEIVED_BUT_REFUND_ONLY",
        ReusedEvidence = "REUSED_EVIDENCE",
    }
);

wire_enum!(Handler { Human = "HUMAN", Bot = "BOT" });

wire_enum!(Phase { PreSale = "PRE_SALE", AfterSale = "AFTER_SALE" });

wire_enum!(SatisfactionLevel {
    VerySatisfied = "VERY_SATISFIED",
    Satisfied = "SATISFIED",
    Neutral = "NEUTRAL",
    Dissatisfied = "DISSATISFIED",
    VeryDissatisfied = "VERY_DISSATISFIED",
});

impl SatisfactionLevel {
    /// `VERY_SATISFIED` and `SATISFIED` count as satisfied (SPEC §4).
    pub fn is_satisfied(self) -> bool {
        matches!(self, SatisfactionLevel::VerySatisfied | SatisfactionLevel::Satisfied)
    }
}

wire_enum!(ServiceFlag { Robot = "ROBOT", SuspectedFraud = "SUSPECTED_FRAUD" });

/// One validated input event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub event_id: String,
    pub shop_id: String,
    pub event_time: Timestamp,
    pub body: EventBody,
}

impl Event {
    /// The event's `type`.
    pub fn event_type(&self) -> EventType {
        match &self.body {
            EventBody::OrderPaid(_) => EventType::OrderPaid,
            EventBody::OrderCompleted(_) => EventType::OrderCompleted,
            EventBody::OrderClosed(_) => EventType::OrderClosed,
            EventBody::OrderRated(_) => EventType::OrderRated,
            EventBody::Logistics(_) => EventType::LogisticsUpdate,
            EventBody::Refund(_) => EventType::RefundUpdate,
            EventBody::ServiceRated(_) => EventType::ServiceRated,
        }
    }
}

/// The type-specific part of an event.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventBody {
    OrderPaid(OrderPaid),
    OrderCompleted(OrderRef),
    OrderClosed(OrderRef),
    OrderRated(OrderRated),
    Logistics(LogisticsUpdate),
    Refund(RefundUpdate),
    ServiceRated(ServiceRated),
}

/// `order.paid`. Defaults are already applied: `ship_deadline` is `event_time` + the
/// configured default ship window when absent; `promised_delivery_by` is present exactly
/// when `delivery_promise` is not `NONE`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderPaid {
    pub order_id: String,
    pub buyer_id: String,
    pub amount_fen: i64,
    pub ship_deadline: Timestamp,
    /// Whether `ship_deadline` was given (false: defaulted). Kept so re-encoding is exact.
    pub ship_deadline_given: bool,
    pub fulfillment: Fulfillment,
    pub delivery_promise: DeliveryPromise,
    pub promised_delivery_by: Option<Timestamp>,
}

/// `order.completed` and `order.closed`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRef {
    pub order_id: String,
    pub buyer_id: String,
}

/// `order.rated`: a DSR rating, each score 1–5.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRated {
    pub order_id: String,
    pub buyer_id: String,
    pub description: u8,
    pub service: u8,
    pub logistics: u8,
}

/// `logistics.update`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogisticsUpdate {
    pub order_id: String,
    pub tracking_no: String,
    pub carrier: String,
    pub status: LogisticsStatus,
}

/// `refund.update`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundUpdate {
    pub refund_id: String,
    pub order_id: String,
    pub buyer_id: String,
    pub stage: RefundStage,
}

/// A refund stage with its stage-specific fields.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefundStage {
    Requested { kind: RefundKind, reason: RefundReason, amount_fen: i64 },
    Modified { reason: RefundReason, amount_fen: i64 },
    MerchantAgreed,
    MerchantRejected,
    ReturnShipped { return_tracking_no: String },
    ReturnReceived,
    PlatformIntervened,
    PlatformRuled { liable: Liable },
    Completed { refunded: bool, closed_by: ClosedBy },
    LabelConfirmed { label: MaliciousLabel },
}

impl RefundStage {
    /// The stage's wire name.
    pub fn name(&self) -> RefundStageName {
        match self {
            RefundStage::Requested { .. } => RefundStageName::Requested,
            RefundStage::Modified { .. } => RefundStageName::Modified,
            RefundStage::MerchantAgreed => RefundStageName::MerchantAgreed,
            RefundStage::MerchantRejected => RefundStageName::MerchantRejected,
            RefundStage::ReturnShipped { .. } => RefundStageName::ReturnShipped,
            RefundStage::ReturnReceived => RefundStageName::ReturnReceived,
            RefundStage::PlatformIntervened => RefundStageName::PlatformIntervened,
            RefundStage::PlatformRuled { .. } => RefundStageName::PlatformRuled,
            RefundStage::Completed { .. } => RefundStageName::Completed,
            RefundStage::LabelConfirmed { .. } => RefundStageName::LabelConfirmed,
        }
    }
}

/// `service.rated`: a customer-service satisfaction rating.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceRated {
    pub buyer_id: String,
    pub agent_id: String,
    pub handler: Handler,
    pub phase: Phase,
    pub level: SatisfactionLevel,
    /// Flags as given (order kept, for exact re-encoding).
    pub flags: Vec<ServiceFlag>,
}
