//! The customer archive (客户档案): one stream per customer — an outside person or
//! organisation, or an internal department.
//!
//! Facts recorded: registration with profile and contacts, profile changes (only the fields
//! that changed), classification, the account manager (客户经理), and consent per purpose
//! for the use of personal data (保密).

use std::collections::BTreeMap;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{
    Aggregate, DomainError, Patch, event_family,
    values::{Address, Email, Label, Name, PhoneNumber, StaffRef, Text},
    vocab::{
        Channel, ConsentPurpose, CustomerKind, Gender, Industry, LifecycleSegment, ProfileField, Scale, Tenure,
        ValueTier,
    },
};

/// How to reach a customer.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Contacts {
    /// Main phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneNumber>,
    /// Backup phone (备用电话).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_phone: Option<PhoneNumber>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// Postal address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
}

/// A key contact at a business customer (关键联系人).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyContact {
    /// Their name.
    pub name: Name,
    /// Their role, e.g. 采购经理.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Label>,
    /// Phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneNumber>,
    /// E-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
}

/// The customer's classification (客户分类). Every part is optional until someone decides it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Classification {
    /// 行业.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub industry: Option<Industry>,
    /// 规模.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scale: Option<Scale>,
    /// 新/老/忠诚.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenure: Option<Tenure>,
    /// 重要/一般/潜在.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_tier: Option<ValueTier>,
    /// 潜在/优势/睡眠/逃跑.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lifecycle_segment: Option<LifecycleSegment>,
    /// 大客户.
    #[serde(default)]
    pub key_account: bool,
    /// 级别, a company-specific grade such as `A` or `VIP3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grade: Option<Label>,
}

// ---------------------------------------------------------------------------------------------
// Commands

/// Open a customer file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RegisterCustomer {
    /// The new customer's id (chosen by the caller, so retries are safe).
    pub customer_id: Uuid,
    /// Person, organisation or internal department.
    pub kind: CustomerKind,
    /// Name.
    pub name: Name,
    /// Only for persons.
    pub gender: Option<Gender>,
    /// Only for persons.
    pub birth_date: Option<NaiveDate>,
    /// Phones, e-mail, address.
    pub contacts: Contacts,
    /// Only for organisations and departments.
    pub key_contacts: Vec<KeyContact>,
    /// Required for internal departments (e.g. `IT`, `FIN`), not allowed otherwise.
    pub department_code: Option<Label>,
    /// 需求.
    pub needs: Option<Text>,
    /// 偏好.
    pub preferences: Option<Text>,
    /// The customer's id in another system (imports, ERP).
    pub external_ref: Option<Label>,
    /// Optional initial classification.
    pub classification: Option<Classification>,
    /// Optional initial account manager.
    pub account_manager: Option<StaffRef>,
}

/// Change profile fields; fields left at `Keep` are untouched.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UpdateCustomerProfile {
    /// Which customer.
    pub customer_id: Uuid,
    /// New name (a name cannot be cleared).
    pub name: Option<Name>,
    /// Gender.
    pub gender: Patch<Gender>,
    /// Birth date.
    pub birth_date: Patch<NaiveDate>,
    /// Main phone.
    pub phone: Patch<PhoneNumber>,
    /// Backup phone.
    pub backup_phone: Patch<PhoneNumber>,
    /// E-mail.
    pub email: Patch<Email>,
    /// Address.
    pub address: Patch<Address>,
    /// Replaces all key contacts; `Set(vec![])` or `Clear` removes them.
    pub key_contacts: Patch<Vec<KeyContact>>,
    /// 需求.
    pub needs: Patch<Text>,
    /// 偏好.
    pub preferences: Patch<Text>,
    /// Id in another system.
    pub external_ref: Patch<Label>,
}

/// Set parts of the classification; parts left at `Keep` are untouched.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClassifyCustomer {
    /// Which customer.
    pub customer_id: Uuid,
    /// 行业.
    pub industry: Patch<Industry>,
    /// 规模.
    pub scale: Patch<Scale>,
    /// 新/老/忠诚.
    pub tenure: Patch<Tenure>,
    /// 重要/一般/潜在.
    pub value_tier: Patch<ValueTier>,
    /// 潜在/优势/睡眠/逃跑.
    pub lifecycle_segment: Patch<LifecycleSegment>,
    /// 大客户.
    pub key_account: Option<bool>,
    /// 级别.
    pub grade: Patch<Label>,
}

/// Make a member of staff the customer's account manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AssignAccountManager {
    /// Which customer.
    pub customer_id: Uuid,
    /// The manager.
    pub manager: StaffRef,
    /// Why (e.g. upgraded to an important customer).
    pub reason: Option<Text>,
}

/// Record that the customer granted or withdrew consent to a purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RecordConsent {
    /// Which customer.
    pub customer_id: Uuid,
    /// For what.
    pub purpose: ConsentPurpose,
    /// Granted (true) or withdrawn (false).
    pub granted: bool,
    /// Where the customer said so.
    pub channel: Option<Channel>,
    /// Free note (e.g. the form reference).
    pub note: Option<Text>,
}

/// Everything that can be asked of a customer file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CustomerCommand {
    /// See [`RegisterCustomer`].
    Register(RegisterCustomer),
    /// See [`UpdateCustomerProfile`].
    UpdateProfile(UpdateCustomerProfile),
    /// See [`ClassifyCustomer`].
    Classify(ClassifyCustomer),
    /// See [`AssignAccountManager`].
    AssignAccountManager(AssignAccountManager),
    /// See [`RecordConsent`].
    RecordConsent(RecordConsent),
}

impl CustomerCommand {
    /// The customer (= stream) the command is about.
    pub fn customer_id(&self) -> Uuid {
        match self {
            CustomerCommand::Register(c) => c.customer_id,
            CustomerCommand::UpdateProfile(c) => c.customer_id,
            CustomerCommand::Classify(c) => c.customer_id,
            CustomerCommand::AssignAccountManager(c) => c.customer_id,
            CustomerCommand::RecordConsent(c) => c.customer_id,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events

/// A customer file was opened.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerRegistered {
    /// The customer's id (also the stream id).
    pub customer_id: Uuid,
    /// Person, organisation or internal department.
    pub kind: CustomerKind,
    /// Name.
    pub name: Name,
    /// Gender (persons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    /// Birth date (persons).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    /// Contacts.
    #[serde(default)]
    pub contacts: Contacts,
    /// Key contacts (organisations, departments).
    #[serde(default)]
    pub key_contacts: Vec<KeyContact>,
    /// Department code (internal departments).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub department_code: Option<Label>,
    /// 需求.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Text>,
    /// 偏好.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<Text>,
    /// Id in another system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<Label>,
}

/// Profile fields changed. Only changed fields are present; `cleared` lists removed ones.
/// `keyContacts`, when non-empty, replaces the whole list.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerProfileUpdated {
    /// New name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<Name>,
    /// New gender.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<Gender>,
    /// New birth date.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub birth_date: Option<NaiveDate>,
    /// New main phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<PhoneNumber>,
    /// New backup phone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backup_phone: Option<PhoneNumber>,
    /// New e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<Email>,
    /// New address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub address: Option<Address>,
    /// New key contacts (replacing the old list).
    #[serde(default)]
    pub key_contacts: Vec<KeyContact>,
    /// New needs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub needs: Option<Text>,
    /// New preferences.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub preferences: Option<Text>,
    /// New external reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external_ref: Option<Label>,
    /// Fields whose value was removed.
    #[serde(default)]
    pub cleared: Vec<ProfileField>,
}

/// The customer's classification is now this (all parts, after the change).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CustomerClassified {
    /// The full classification after the change.
    pub classification: Classification,
}

/// The customer got a (new) account manager.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AccountManagerAssigned {
    /// The manager now.
    pub manager: StaffRef,
    /// The manager before, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub previous_manager: Option<StaffRef>,
    /// Why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<Text>,
}

/// The customer consented to the use of their data for a purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentGranted {
    /// For what.
    pub purpose: ConsentPurpose,
    /// Where they said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

/// The customer withdrew consent for a purpose.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ConsentWithdrawn {
    /// For what.
    pub purpose: ConsentPurpose,
    /// Where they said so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<Channel>,
    /// Note.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<Text>,
}

event_family! {
    /// Facts recorded on a customer stream.
    pub enum CustomerEvent {
        CustomerRegistered,
        CustomerProfileUpdated,
        CustomerClassified,
        AccountManagerAssigned,
        ConsentGranted,
        ConsentWithdrawn,
    }
}

// ---------------------------------------------------------------------------------------------
// State

/// What the aggregate needs to know to decide: the current file.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Customer {
    /// The registration, once registered.
    pub registration: Option<CustomerRegistered>,
    /// Classification so far.
    pub classification: Classification,
    /// Current account manager.
    pub account_manager: Option<StaffRef>,
    /// Current consent per purpose (absent = never asked).
    pub consents: BTreeMap<ConsentPurpose, bool>,
}

impl Customer {
    /// Whether a file exists.
    pub fn is_registered(&self) -> bool {
        self.registration.is_some()
    }

    /// The customer's kind, once registered.
    pub fn kind(&self) -> Option<CustomerKind> {
        self.registration.as_ref().map(|r| r.kind)
    }

    fn registered(&self, id: Uuid) -> Result<&CustomerRegistered, DomainError> {
        self.registration.as_ref().ok_or_else(|| DomainError::NotFound { entity: "customer", id: id.to_string() })
    }
}

fn check_contacts(kind: CustomerKind, contacts: &Contacts, key_contacts: &[KeyContact]) -> Result<(), DomainError> {
    if let (Some(p), Some(b)) = (&contacts.phone, &contacts.backup_phone)
        && p == b
    {
        return Err(DomainError::invalid("backupPhone", "the backup phone must differ from the main phone"));
    }
    if kind == CustomerKind::Person && !key_contacts.is_empty() {
        return Err(DomainError::invalid(
            "keyContacts",
            "only organisations and internal departments have key contacts",
        ));
    }
    Ok(())
}

impl Aggregate for Customer {
    const STREAM_TYPE: &'static str = "customer";
    type Command = CustomerCommand;
    type Event = CustomerEvent;

    fn decide(&self, command: &CustomerCommand) -> Result<Vec<CustomerEvent>, DomainError> {
        match command {
            CustomerCommand::Register(c) => self.register(c),
            CustomerCommand::UpdateProfile(c) => self.update_profile(c),
            CustomerCommand::Classify(c) => self.classify(c),
            CustomerCommand::AssignAccountManager(c) => {
                self.registered(c.customer_id)?;
                if self.account_manager.as_ref().map(|m| &m.id) == Some(&c.manager.id) {
                    return Ok(vec![]);
                }
                Ok(vec![
                    AccountManagerAssigned {
                        manager: c.manager.clone(),
                        previous_manager: self.account_manager.clone(),
                        reason: c.reason.clone(),
                    }
                    .into(),
                ])
            }
            CustomerCommand::RecordConsent(c) => {
                self.registered(c.customer_id)?;
                let current = self.consents.get(&c.purpose).copied();
                if current == Some(c.granted) {
                    return Ok(vec![]);
                }
                // A refusal without earlier consent is still recorded: the customer said no.
                let event = if c.granted {
                    ConsentGranted { purpose: c.purpose, channel: c.channel, note: c.note.clone() }.into()
                } else {
                    ConsentWithdrawn { purpose: c.purpose, channel: c.channel, note: c.note.clone() }.into()
                };
                Ok(vec![event])
            }
        }
    }

    fn apply(&mut self, event: &CustomerEvent) {
        match event {
            CustomerEvent::CustomerRegistered(e) => self.registration = Some(e.clone()),
            CustomerEvent::CustomerProfileUpdated(e) => {
                if let Some(r) = self.registration.as_mut() {
                    apply_profile_update(r, e);
                }
            }
            CustomerEvent::CustomerClassified(e) => self.classification = e.classification.clone(),
            CustomerEvent::AccountManagerAssigned(e) => self.account_manager = Some(e.manager.clone()),
            CustomerEvent::ConsentGranted(e) => {
                self.consents.insert(e.purpose, true);
            }
            CustomerEvent::ConsentWithdrawn(e) => {
                self.consents.insert(e.purpose, false);
            }
        }
    }
}

/// Applies a profile update to a registration record (shared with read models).
pub fn apply_profile_update(r: &mut CustomerRegistered, e: &CustomerProfileUpdated) {
    if let Some(v) = &e.name {
        r.name = v.clone();
    }
    macro_rules! set {
        ($($field:ident => $target:expr),+ $(,)?) => {
            $( if let Some(v) = &e.$field { $target = Some(v.clone()); } )+
        };
    }
    set!(
        gender => r.gender,
        birth_date => r.birth_date,
        phone => r.contacts.phone,
        backup_phone => r.contacts.backup_phone,
        email => r.contacts.email,
        address => r.contacts.address,
        needs => r.needs,
        preferences => r.preferences,
        external_ref => r.external_ref,
    );
    if !e.key_contacts.is_empty() {
        r.key_contacts = e.key_contacts.clone();
    }
    for field in &e.cleared {
        match field {
            ProfileField::Gender => r.gender = None,
            ProfileField::BirthDate => r.birth_date = None,
            ProfileField::Phone => r.contacts.phone = None,
            ProfileField::BackupPhone => r.contacts.backup_phone = None,
            ProfileField::Email => r.contacts.email = None,
            ProfileField::Address => r.contacts.address = None,
            ProfileField::KeyContacts => r.key_contacts.clear(),
            ProfileField::Needs => r.needs = None,
            ProfileField::Preferences => r.preferences = None,
            ProfileField::ExternalRef => r.external_ref = None,
        }
    }
}

impl Customer {
    fn register(&self, c: &RegisterCustomer) -> Result<Vec<CustomerEvent>, DomainError> {
        if self.is_registered() {
            return Err(DomainError::AlreadyExists { entity: "customer", id: c.customer_id.to_string() });
        }
        check_contacts(c.kind, &c.contacts, &c.key_contacts)?;
        let is_person = c.kind == CustomerKind::Person;
        if !is_person && (c.gender.is_some() || c.birth_date.is_some()) {
            return Err(DomainError::invalid(
                if c.gender.is_some() { "gender" } else { "birthDate" },
                "only persons have a gender or a birth date",
            ));
        }
        match (c.kind, &c.department_code) {
            (CustomerKind::InternalDepartment, None) => {
                return Err(DomainError::invalid("departmentCode", "an internal department needs its department code"));
            }
            (CustomerKind::Person | CustomerKind::Organization, Some(_)) => {
                return Err(DomainError::invalid("departmentCode", "only internal departments have a department code"));
            }
            _ => {}
        }
        let mut events: Vec<CustomerEvent> = vec![
            CustomerRegistered {
                customer_id: c.customer_id,
                kind: c.kind,
                name: c.name.clone(),
                gender: c.gender,
                birth_date: c.birth_date,
                contacts: c.contacts.clone(),
                key_contacts: c.key_contacts.clone(),
                department_code: c.department_code.clone(),
                needs: c.needs.clone(),
                preferences: c.preferences.clone(),
                external_ref: c.external_ref.clone(),
            }
            .into(),
        ];
        if let Some(classification) = &c.classification
            && *classification != Classification::default()
        {
            events.push(CustomerClassified { classification: classification.clone() }.into());
        }
        if let Some(manager) = &c.account_manager {
            events
                .push(AccountManagerAssigned { manager: manager.clone(), previous_manager: None, reason: None }.into());
        }
        Ok(events)
    }

    fn update_profile(&self, c: &UpdateCustomerProfile) -> Result<Vec<CustomerEvent>, DomainError> {
        let r = self.registered(c.customer_id)?;
        let is_person = r.kind == CustomerKind::Person;
        if !is_person && (c.gender.set_value().is_some() || c.birth_date.set_value().is_some()) {
            return Err(DomainError::invalid(
                if c.gender.set_value().is_some() { "gender" } else { "birthDate" },
                "only persons have a gender or a birth date",
            ));
        }
        let mut e = CustomerProfileUpdated::default();
        if let Some(name) = &c.name
            && *name != r.name
        {
            e.name = Some(name.clone());
        }
        macro_rules! diff {
            ($($field:ident: $current:expr => $clear:expr),+ $(,)?) => {
                $(
                    match c.$field.change($current) {
                        Some(Some(v)) => e.$field = Some(v),
                        Some(None) => e.cleared.push($clear),
                        None => {}
                    }
                )+
            };
        }
        diff!(
            gender: r.gender.as_ref() => ProfileField::Gender,
            birth_date: r.birth_date.as_ref() => ProfileField::BirthDate,
            phone: r.contacts.phone.as_ref() => ProfileField::Phone,
            backup_phone: r.contacts.backup_phone.as_ref() => ProfileField::BackupPhone,
            email: r.contacts.email.as_ref() => ProfileField::Email,
            address: r.contacts.address.as_ref() => ProfileField::Address,
            needs: r.needs.as_ref() => ProfileField::Needs,
            preferences: r.preferences.as_ref() => ProfileField::Preferences,
            external_ref: r.external_ref.as_ref() => ProfileField::ExternalRef,
        );
        match &c.key_contacts {
            Patch::Keep => {}
            Patch::Clear => {
                if !r.key_contacts.is_empty() {
                    e.cleared.push(ProfileField::KeyContacts)
                }
            }
            Patch::Set(list) if list.is_empty() => {
                if !r.key_contacts.is_empty() {
                    e.cleared.push(ProfileField::KeyContacts)
                }
            }
            Patch::Set(list) => {
                if *list != r.key_contacts {
                    e.key_contacts = list.clone();
                }
            }
        }
        if e == CustomerProfileUpdated::default() {
            return Ok(vec![]);
        }
        // Check the contacts as they will be after the change.
        let mut after = r.clone();
        apply_profile_update(&mut after, &e);
        check_contacts(after.kind, &after.contacts, &after.key_contacts)?;
        Ok(vec![e.into()])
    }

    fn classify(&self, c: &ClassifyCustomer) -> Result<Vec<CustomerEvent>, DomainError> {
        self.registered(c.customer_id)?;
        let now = &self.classification;
        let after = Classification {
            industry: c.industry.after(now.industry.as_ref()),
            scale: c.scale.after(now.scale.as_ref()),
            tenure: c.tenure.after(now.tenure.as_ref()),
            value_tier: c.value_tier.after(now.value_tier.as_ref()),
            lifecycle_segment: c.lifecycle_segment.after(now.lifecycle_segment.as_ref()),
            key_account: c.key_account.unwrap_or(now.key_account),
            grade: c.grade.after(now.grade.as_ref()),
        };
        if after == *now {
            return Ok(vec![]);
        }
        Ok(vec![CustomerClassified { classification: after }.into()])
    }
}

/// Example values, used by tests, documentation and the event catalogue.
pub mod examples {
    use super::*;
    use crate::values::StaffId;

    fn name(s: &str) -> Name {
        Name::parse("name", s).unwrap_or_else(|e| panic!("example name {s}: {e}"))
    }

    /// A staff reference.
    pub fn staff(id: &str, display: &str) -> StaffRef {
        StaffRef {
            id: StaffId::parse("staff", id).unwrap_or_else(|e| panic!("example staff {id}: {e}")),
            name: Some(name(display)),
        }
    }

    fn phone(s: &str) -> PhoneNumber {
        PhoneNumber::parse("phone", s).unwrap_or_else(|e| panic!("example phone {s}: {e}"))
    }

    fn text(s: &str) -> Text {
        Text::parse("text", s).unwrap_or_else(|e| panic!("example text {s}: {e}"))
    }

    fn label(s: &str) -> Label {
        Label::parse("label", s).unwrap_or_else(|e| panic!("example label {s}: {e}"))
    }

    /// A person's registration with every field filled.
    pub fn register_person() -> (Uuid, RegisterCustomer) {
        let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0001);
        (
            id,
            RegisterCustomer {
                customer_id: id,
                kind: CustomerKind::Person,
                name: name("李雷"),
                gender: Some(Gender::Male),
                birth_date: NaiveDate::from_ymd_opt(1988, 5, 17),
                contacts: Contacts {
                    phone: Some(phone("138 0013 8000")),
                    backup_phone: Some(phone("+86 10 6552 9988")),
                    email: Email::parse("email", "li.lei@example.com").ok(),
                    address: Address::parse(
                        "address",
                        Some("建国路 88 号"),
                        Some("北京"),
                        Some("北京市"),
                        Some("100022"),
                        Some("CN"),
                    )
                    .ok(),
                },
                key_contacts: vec![],
                department_code: None,
                needs: Some(text("宽带升级")),
                preferences: Some(text("工作日晚上联系")),
                external_ref: Some(label("ERP-10086")),
                classification: None,
                account_manager: None,
            },
        )
    }

    /// An organisation's registration.
    pub fn register_organization() -> (Uuid, RegisterCustomer) {
        let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0002);
        (
            id,
            RegisterCustomer {
                customer_id: id,
                kind: CustomerKind::Organization,
                name: name("华北制造有限公司"),
                gender: None,
                birth_date: None,
                contacts: Contacts { phone: Some(phone("010-8888 1234")), ..Contacts::default() },
                key_contacts: vec![KeyContact {
                    name: name("韩梅梅"),
                    role: Some(label("采购经理")),
                    phone: Some(phone("139 1111 2222")),
                    email: Email::parse("email", "han@huabei.example.cn").ok(),
                }],
                department_code: None,
                needs: None,
                preferences: None,
                external_ref: None,
                classification: Some(Classification {
                    industry: Some(Industry::Manufacturing),
                    scale: Some(Scale::Large),
                    value_tier: Some(ValueTier::Important),
                    key_account: true,
                    ..Classification::default()
                }),
                account_manager: Some(staff("wang.fang", "王芳")),
            },
        )
    }

    /// An internal department's registration (内部客户).
    pub fn register_department() -> (Uuid, RegisterCustomer) {
        let (_, org) = register_organization();
        let id = Uuid::from_u128(0x0190_0000_0000_7000_8000_0000_0000_0003);
        (
            id,
            RegisterCustomer {
                customer_id: id,
                kind: CustomerKind::InternalDepartment,
                name: name("网络运维部"),
                department_code: Some(label("NETOPS")),
                classification: None,
                account_manager: None,
                ..org
            },
        )
    }

    /// Examples of every customer event; together they fill every optional field.
    pub fn all_events() -> Vec<CustomerEvent> {
        let (_, department) = register_department();
        let Some(CustomerEvent::CustomerRegistered(department)) =
            Customer::default().decide(&CustomerCommand::Register(department)).ok().and_then(|mut v| v.pop())
        else {
            panic!("example department must be accepted");
        };
        let (_, person) = register_person();
        let Some(CustomerEvent::CustomerRegistered(registered)) =
            Customer::default().decide(&CustomerCommand::Register(person)).ok().and_then(|mut v| v.pop())
        else {
            panic!("example registration must be accepted");
        };
        vec![
            registered.clone().into(),
            department.into(),
            CustomerProfileUpdated {
                name: Some(name("李雷雷")),
                gender: Some(Gender::Male),
                birth_date: NaiveDate::from_ymd_opt(1988, 5, 18),
                phone: Some(phone("13900139000")),
                backup_phone: Some(phone("13800138000")),
                email: Email::parse("email", "lilei@example.org").ok(),
                address: registered.contacts.address.clone(),
                key_contacts: vec![KeyContact {
                    name: name("韩梅梅"),
                    role: Some(label("家属")),
                    phone: Some(phone("13700137000")),
                    email: Email::parse("email", "han@example.com").ok(),
                }],
                needs: Some(text("千兆宽带")),
                preferences: Some(text("短信通知")),
                external_ref: Some(label("ERP-10087")),
                cleared: vec![ProfileField::Address],
            }
            .into(),
            CustomerClassified {
                classification: Classification {
                    industry: Some(Industry::Services),
                    scale: Some(Scale::SoleProprietor),
                    tenure: Some(Tenure::Loyal),
                    value_tier: Some(ValueTier::Important),
                    lifecycle_segment: Some(LifecycleSegment::Advantaged),
                    key_account: true,
                    grade: Some(label("VIP3")),
                },
            }
            .into(),
            AccountManagerAssigned {
                manager: staff("zhang.wei", "张伟"),
                previous_manager: Some(staff("wang.fang", "王芳")),
                reason: Some(text("升级为重要客户")),
            }
            .into(),
            ConsentGranted {
                purpose: ConsentPurpose::Surveys,
                channel: Some(Channel::Phone),
                note: Some(text("电话录音 2026-03-01")),
            }
            .into(),
            ConsentWithdrawn {
                purpose: ConsentPurpose::Marketing,
                channel: Some(Channel::Email),
                note: Some(text("退订邮件")),
            }
            .into(),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::examples::*;
    use super::*;
    use crate::{DomainEvent, testing::given};

    fn registered_person() -> (Uuid, Vec<CustomerEvent>) {
        let (id, cmd) = register_person();
        let events = Customer::default().decide(&CustomerCommand::Register(cmd)).unwrap();
        (id, events)
    }

    #[test]
    fn registering_records_the_file() {
        let (id, cmd) = register_person();
        let state = given::<Customer>([]).when(CustomerCommand::Register(cmd.clone())).then([CustomerRegistered {
            customer_id: id,
            kind: CustomerKind::Person,
            name: cmd.name.clone(),
            gender: cmd.gender,
            birth_date: cmd.birth_date,
            contacts: cmd.contacts.clone(),
            key_contacts: vec![],
            department_code: None,
            needs: cmd.needs.clone(),
            preferences: cmd.preferences.clone(),
            external_ref: cmd.external_ref.clone(),
        }
        .into()]);
        assert!(state.is_registered());
    }

    #[test]
    fn registering_with_classification_and_manager_records_three_facts() {
        let (_, cmd) = register_organization();
        let events = given::<Customer>([]).when(CustomerCommand::Register(cmd)).then_count(3);
        let types: Vec<_> = events.iter().map(|e| e.event_type()).collect();
        assert_eq!(types, ["CustomerRegistered", "CustomerClassified", "AccountManagerAssigned"]);
    }

    #[test]
    fn registering_twice_is_refused() {
        let (_, events) = registered_person();
        let (_, cmd) = register_person();
        let err = given::<Customer>(events).when(CustomerCommand::Register(cmd)).then_err();
        assert!(matches!(err, DomainError::AlreadyExists { entity: "customer", .. }));
    }

    #[test]
    fn registration_rules() {
        let (_, mut cmd) = register_person();
        cmd.contacts.backup_phone = cmd.contacts.phone.clone();
        given::<Customer>([]).when(CustomerCommand::Register(cmd)).then_invalid("backupPhone");

        let (_, mut cmd) = register_person();
        cmd.key_contacts = register_organization().1.key_contacts;
        given::<Customer>([]).when(CustomerCommand::Register(cmd)).then_invalid("keyContacts");

        let (_, mut cmd) = register_organization();
        cmd.kind = CustomerKind::InternalDepartment;
        given::<Customer>([]).when(CustomerCommand::Register(cmd)).then_invalid("departmentCode");

        let (_, mut cmd) = register_organization();
        cmd.gender = Some(Gender::Female);
        given::<Customer>([]).when(CustomerCommand::Register(cmd)).then_invalid("gender");
    }

    #[test]
    fn commands_on_an_unknown_customer_are_not_found() {
        let id = Uuid::nil();
        let err = given::<Customer>([])
            .when(CustomerCommand::AssignAccountManager(AssignAccountManager {
                customer_id: id,
                manager: staff("a", "A"),
                reason: None,
            }))
            .then_err();
        assert!(matches!(err, DomainError::NotFound { entity: "customer", .. }));
    }

    #[test]
    fn profile_updates_record_only_what_changed() {
        let (id, events) = registered_person();
        let (_, cmd) = register_person();
        let update = UpdateCustomerProfile {
            customer_id: id,
            name: Some(cmd.name.clone()),                           // same: not recorded
            email: Patch::Set(cmd.contacts.email.clone().unwrap()), // same: not recorded
            phone: Patch::Set(PhoneNumber::parse("p", "13912345678").unwrap()),
            address: Patch::Clear,
            ..UpdateCustomerProfile::default()
        };
        let state =
            given::<Customer>(events).when(CustomerCommand::UpdateProfile(update)).then([CustomerProfileUpdated {
                phone: Some(PhoneNumber::parse("p", "13912345678").unwrap()),
                cleared: vec![ProfileField::Address],
                ..CustomerProfileUpdated::default()
            }
            .into()]);
        let r = state.registration.unwrap();
        assert_eq!(r.contacts.phone.unwrap().as_str(), "13912345678");
        assert!(r.contacts.address.is_none());
        assert_eq!(r.contacts.email, cmd.contacts.email);
    }

    #[test]
    fn an_update_that_changes_nothing_records_nothing() {
        let (id, events) = registered_person();
        let (_, cmd) = register_person();
        given::<Customer>(events)
            .when(CustomerCommand::UpdateProfile(UpdateCustomerProfile {
                customer_id: id,
                name: Some(cmd.name),
                key_contacts: Patch::Clear,
                ..UpdateCustomerProfile::default()
            }))
            .then_nothing();
    }

    #[test]
    fn an_update_may_not_make_the_backup_phone_equal_the_main_phone() {
        let (id, events) = registered_person();
        let (_, cmd) = register_person();
        given::<Customer>(events)
            .when(CustomerCommand::UpdateProfile(UpdateCustomerProfile {
                customer_id: id,
                backup_phone: Patch::Set(cmd.contacts.phone.unwrap()),
                ..UpdateCustomerProfile::default()
            }))
            .then_invalid("backupPhone");
    }

    #[test]
    fn classification_merges_parts_and_ignores_no_ops() {
        let (id, events) = registered_person();
        let state = given::<Customer>(events)
            .when(CustomerCommand::Classify(ClassifyCustomer {
                customer_id: id,
                value_tier: Patch::Set(ValueTier::Important),
                key_account: Some(true),
                ..ClassifyCustomer::default()
            }))
            .then([CustomerClassified {
                classification: Classification {
                    value_tier: Some(ValueTier::Important),
                    key_account: true,
                    ..Classification::default()
                },
            }
            .into()]);
        let mut history = registered_person().1;
        history.push(CustomerEvent::CustomerClassified(CustomerClassified {
            classification: state.classification.clone(),
        }));
        let state = given::<Customer>(history.clone())
            .when(CustomerCommand::Classify(ClassifyCustomer {
                customer_id: id,
                tenure: Patch::Set(Tenure::Loyal),
                ..ClassifyCustomer::default()
            }))
            .then_count(1);
        let CustomerEvent::CustomerClassified(c) = &state[0] else { panic!() };
        assert_eq!(c.classification.value_tier, Some(ValueTier::Important));
        assert_eq!(c.classification.tenure, Some(Tenure::Loyal));
        given::<Customer>(history)
            .when(CustomerCommand::Classify(ClassifyCustomer {
                customer_id: id,
                key_account: Some(true),
                ..ClassifyCustomer::default()
            }))
            .then_nothing();
    }

    #[test]
    fn reassigning_the_account_manager_remembers_the_previous_one() {
        let (_, cmd) = register_organization();
        let id = cmd.customer_id;
        let history = Customer::default().decide(&CustomerCommand::Register(cmd)).unwrap();
        given::<Customer>(history.clone())
            .when(CustomerCommand::AssignAccountManager(AssignAccountManager {
                customer_id: id,
                manager: staff("zhang.wei", "张伟"),
                reason: None,
            }))
            .then([AccountManagerAssigned {
                manager: staff("zhang.wei", "张伟"),
                previous_manager: Some(staff("wang.fang", "王芳")),
                reason: None,
            }
            .into()]);
        given::<Customer>(history)
            .when(CustomerCommand::AssignAccountManager(AssignAccountManager {
                customer_id: id,
                manager: staff("wang.fang", "王芳"),
                reason: None,
            }))
            .then_nothing();
    }

    #[test]
    fn consent_is_recorded_per_purpose_and_only_on_change() {
        let (id, events) = registered_person();
        let grant = |granted| {
            CustomerCommand::RecordConsent(RecordConsent {
                customer_id: id,
                purpose: ConsentPurpose::Surveys,
                granted,
                channel: None,
                note: None,
            })
        };
        let state = given::<Customer>(events.clone()).when(grant(true)).then_count(1);
        let mut history = events;
        history.extend(state);
        given::<Customer>(history.clone()).when(grant(true)).then_nothing();
        let withdrawn = given::<Customer>(history).when(grant(false)).then_count(1);
        assert_eq!(withdrawn[0].event_type(), "ConsentWithdrawn");
    }

    #[test]
    fn events_survive_json() {
        for e in all_events() {
            let (t, payload) = e.to_payload().unwrap();
            let back = CustomerEvent::from_payload(t, payload).unwrap();
            assert_eq!(back, e);
        }
        let mut types: Vec<_> = all_events().iter().map(|e| e.event_type()).collect();
        types.dedup();
        assert_eq!(types, CustomerEvent::EVENT_TYPES);
    }

    /// Decoding a borrowed payload answers as deserializing the tagged object does, errors
    /// included (they reach poison messages and the audit of parked events).
    #[test]
    fn borrowed_payloads_decode_as_tagged_objects() {
        let tagged = |t: &str, payload: &serde_json::Value| {
            serde_json::from_value::<CustomerEvent>(serde_json::json!({ t: payload })).map_err(|e| e.to_string())
        };
        for e in all_events() {
            let (t, payload) = e.to_payload().unwrap();
            assert_eq!(CustomerEvent::from_payload_ref(t, &payload).unwrap(), e);
        }
        let (t, good) = all_events()[0].to_payload().unwrap();
        let bad = [
            ("NoSuchEvent", good.clone()),
            (t, serde_json::json!({})),
            (t, serde_json::json!([1, 2])),
            (t, serde_json::Value::Null),
            (t, serde_json::json!({"customerId": 7})),
        ];
        for (t, payload) in bad {
            let borrowed = CustomerEvent::from_payload_ref(t, &payload).map_err(|e| e.to_string());
            assert!(borrowed.is_err(), "{t} {payload} decoded");
            assert_eq!(borrowed, tagged(t, &payload), "{t} {payload}");
        }
    }
}
